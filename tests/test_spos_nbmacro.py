"""SPOS (ShuffleNetV2 one-shot space) and NAS-Bench-Macro: notation, skeletons, exact counts."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest
from nas.search_spaces import get_space
from nas.search_spaces.nbmacro import NBMacroGenotype, load_macro, parse_nbmacro
from nas.search_spaces.spos import SCALES, SPOSGenotype, parse_spos

from nas.errors import InvalidGenotype, UnknownName
from tests.conftest import require_data

SPOS = get_space("spos")
SPOS_CS = get_space("spos", channel_search=True)
MACRO = get_space("nbmacro")
SPOS_ARCH = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"

# (blocks, width-scale indices into SCALES, params, FLOPs) of Megvii's own
# ShuffleNetV2_OneShot (src/Evaluation/template) at 224x224, counted by its get_flops
# (conv MACs + linear weights) and sum(p.numel()) over its parameters.
MEGVII_REFERENCE = [
    ("33023323211210212002", "78156593877840801609", 3426428, 393008320),
    ("32120111130023022021", "98947196593423209471", 3561805, 416471872),
    ("01100321132332020321", "30413525601230989101", 3005423, 307875328),
    ("10302000110310030201", "14562087091634579230", 3257512, 332753216),
    ("11220310332232103020", "84237594599246610935", 3572625, 381819072),
    ("11133303301302133003", "54706381206650300891", 3270053, 283035072),
    ("10122103300230212012", "00034855909776582369", 3810151, 372313856),
    ("20112222020021122312", "17304281465461187755", 3890726, 353108992),
    ("03033022113000110300", "68847793615349263511", 3222428, 376785792),
    ("03103321011013321031", "96687577389305550824", 3364281, 382116992),
    ("13230000110203211323", "88091891634896769930", 4112510, 449763648),
    ("01222032233301112200", "76279125609767017200", 3174785, 395285056),
    # The channel-search example of Megvii's network.py (its scale list 0.2..1.6).
    ("00311100202110202132", "65352634257546744543", 3432579, 327857920),
    ("0" * 20, "4" * 20, 3154880, 295842496),
    ("1" * 20, "4" * 20, 3211968, 313654976),
    ("2" * 20, "4" * 20, 3297600, 340373696),
    ("3" * 20, "4" * 20, 3870816, 358825920),
]


# ----------------------------------------------------------------------------- SPOS


def test_spos_published_architecture_counts():
    geno = SPOS.resolve("SPOS")
    assert geno.to_str() == SPOS_ARCH
    g = SPOS.to_graph(geno, "imagenet")
    # README: 323M FLOPs, 3.5M params; Megvii's counters give exactly these numbers.
    assert (g.params(), g.flops()) == (3_558_464, 322_918_720)
    assert round(g.flops() / 1e6) == 323 and int(g.params() / 1e5) == 35
    assert g.shape(g.output) == (1000,)
    # No max pool: the last conv sees a 7x7 map.
    last = [n for n in g.topological() if g.g.nodes[n]["scope"] == "conv_last"][0]
    assert g.shape(last) == (7, 7, 1024)
    assert g.op_counts().get("max_pool", 0) == 0
    # SPOS convention: conv MACs + the classifier's weights (it has no bias).
    dense = [n for n in g.g if g.op(n) == "dense"]
    assert len(dense) == 1 and g.attrs(dense[0])["bias"] is False
    assert g.node_macs(dense[0]) == 1024 * 1000


@pytest.mark.parametrize("blocks,scales,params,flops", MEGVII_REFERENCE)
def test_spos_counts_equal_megvii_with_channel_scales(blocks, scales, params, flops):
    geno = SPOS_CS.from_indices([int(c) for c in blocks + scales])
    g = SPOS_CS.to_graph(geno, "imagenet")
    assert (g.params(), g.flops()) == (params, flops)


def test_spos_channel_split_is_megvii_even_odd_split():
    from nas.model import channel_shuffle

    b, h, w, c = 2, 3, 3, 12
    x = np.arange(b * h * w * c, dtype=np.float32).reshape(b, h, w, c)
    # Megvii's channel_shuffle, transcribed from NCHW torch to numpy.
    nchw = x.transpose(0, 3, 1, 2)
    r = nchw.reshape(b * c // 2, 2, h * w).transpose(1, 0, 2).reshape(2, -1, c // 2, h, w)
    keep_ref, main_ref = (t.transpose(0, 2, 3, 1) for t in r)
    assert np.array_equal(keep_ref[0, 0, 0], np.arange(0, c, 2))  # even channels pass
    # The IR expansion: channel_shuffle(groups=C/2), then two contiguous slices.
    g = SPOS.to_graph(SPOS.resolve("SPOS"), "imagenet")
    shuffles = [n for n in g.g if g.op(n) == "channel_shuffle"]
    assert len(shuffles) == 16  # every block but a stage's first
    for n in shuffles:
        assert g.attrs(n)["groups"] * 2 == g.shape(n)[-1]
    y = np.asarray(channel_shuffle(x, c // 2))
    assert np.array_equal(y[..., : c // 2], keep_ref)
    assert np.array_equal(y[..., c // 2 :], main_ref)
    # groups=2 would interleave instead: not SPOS's order.
    assert not np.array_equal(np.asarray(channel_shuffle(x, 2))[..., : c // 2], keep_ref)


def test_spos_parse_round_trip_and_notations():
    geno = parse_spos(SPOS_ARCH)
    assert geno.default_width and geno.to_str() == SPOS_ARCH
    tup = "(2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)"
    assert SPOS.parse(tup) == geno == SPOS.parse(SPOS_ARCH.replace(",", ""))
    assert SPOS.parse(f"[{SPOS_ARCH}]") == geno
    scales = "1.6,1.4,0.8,1.4,0.6,1.6,0.8,1.0,0.6,1.4,2.0,1.4,1.0,1.6,0.2,1.0,1.0,1.4,1.0,0.8"
    cs = SPOS.parse(f"{SPOS_ARCH};{scales}")
    assert cs.to_str() == f"{SPOS_ARCH};{scales}" and SPOS.parse(cs.to_str()) == cs
    assert cs.scale_values[10] == 2.0 and cs.scale_values[14] == 0.2
    assert SPOS.parse(f"({tup}, ({scales}))") == cs
    assert hash(cs) != hash(geno) and cs != geno
    # Block-only space: the scales are not part of it; channel-search space: round trip.
    assert SPOS.contains(geno) and not SPOS.contains(cs)
    with pytest.raises(InvalidGenotype, match="channel_search=True"):
        SPOS.to_indices(cs)
    assert SPOS_CS.from_indices(SPOS_CS.to_indices(cs)) == cs
    assert SPOS.from_indices(SPOS.to_indices(geno)) == geno
    assert len(SPOS.choices()) == 20 and len(SPOS_CS.choices()) == 40
    assert SPOS.size == 4**20 and SPOS_CS.size == 40**20
    rng = np.random.default_rng(0)
    for _ in range(3):
        s = SPOS_CS.sample(rng)
        assert SPOS_CS.parse(s.to_str()) == s
        g = SPOS_CS.to_graph(s, "digits")
        assert g.shape(g.output) == (10,) and g.meta["arch"] == s.to_str()


@pytest.mark.parametrize(
    "text,msg",
    [
        (",".join(["0"] * 19), "has 19 block choices; expected 20"),
        (",".join(["0"] * 21), "has 21 block choices"),
        (SPOS_ARCH[:-1] + "4", "blocks\\[19\\] is 4; expected 0..3"),
        (SPOS_ARCH.replace("2", "x", 1), "block choice 0 is 'x'"),
        (SPOS_ARCH + ";" + ",".join(["1.0"] * 19), "has 19 width scales"),
        (SPOS_ARCH + ";" + ",".join(["0.3"] * 20), "width scale 0 is '0.3'"),
        (SPOS_ARCH + ";1.0;1.0", "more than two"),
        ("", "empty architecture"),
        ("-1" + SPOS_ARCH[1:], "block choice 0 is '-1'"),
    ],
)
def test_spos_malformed_genotypes(text, msg):
    with pytest.raises(InvalidGenotype, match=msg):
        SPOS.parse(text)


def test_spos_genotype_validation_and_dataset_errors():
    with pytest.raises(InvalidGenotype, match="blocks needs 20"):
        SPOSGenotype((0,) * 19)
    with pytest.raises(InvalidGenotype, match="scales\\[3\\] is 10"):
        SPOSGenotype((0,) * 20, (4, 4, 4, 10) + (4,) * 16)
    with pytest.raises(InvalidGenotype, match="tuple of ints"):
        SPOSGenotype(("0",) * 20)
    with pytest.raises(InvalidGenotype, match="expected 20 choice indices"):
        SPOS.from_indices([0] * 40)
    with pytest.raises(UnknownName, match="no network for dataset 'cifar10'"):
        SPOS.to_graph(SPOS.resolve("SPOS"), "cifar10")
    assert SCALES[4] == 1.0 and len(SCALES) == 10


def test_spos_digits_network_runs():
    import jax.numpy as jnp

    from nas.model import build_model, count_model_params

    g = SPOS.to_graph(SPOS.resolve("SPOS"), "digits")
    assert g.shape(g.input) == (8, 8, 1) and g.shape(g.output) == (10,)
    model = build_model(g, seed=0)
    model.eval()
    y = model(jnp.ones((2, 8, 8, 1)))
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
    assert count_model_params(model) == g.params()


# ----------------------------------------------------------------------------- Macro


def test_macro_counts_equal_the_benchmark_for_all_6561():
    require_data("nasbench/nas-bench-macro_cifar10.json")
    records = load_macro()
    assert len(records) == 3**8 == MACRO.size
    assert [r[0].to_str() for r in records] == sorted(r[0].to_str() for r in records)
    for geno, rec in records:
        g = MACRO.to_graph(geno, "cifar10")
        assert (g.params(), g.flops()) == (rec["params"], rec["flops"]), geno.to_str()


def test_macro_anchor_counts_and_skeleton():
    # All identities, by hand: stem 3*32*9 + 64, downsample 1x1 convs 32->64->128->256 + BN,
    # last conv 256*1280 + BN, classifier 1280*10 + 10.
    g = MACRO.to_graph(MACRO.resolve("all_identity"), "cifar10")
    params = 864 + 64 + 2048 + 128 + 8192 + 256 + 32768 + 512 + 327680 + 2560 + 12810
    flops = 32 * 32 * 864 + 3 * 524288 + 16 * 327680 + 12800
    assert (g.params(), g.flops()) == (params, flops) == (387_882, 7_713_280)
    g = MACRO.to_graph(MACRO.parse("11111111"), "cifar10")
    assert (g.params(), g.flops()) == (1_588_874, 53_246_464)
    adds = [n for n in g.g if g.op(n) == "add"]
    assert len(adds) == 5  # residuals only in the stride-1 layers
    assert g.shape(g.inputs(g.output)[0]) == (10,)


def test_macro_single_choice_per_layer_and_random_against_table():
    require_data("nasbench/nas-bench-macro_cifar10.json")
    table = {g.to_str(): r for g, r in load_macro()}
    codes = {str(v) * 8 for v in range(3)}
    for layer, v in itertools.product(range(8), range(3)):
        codes.add("0" * layer + str(v) + "0" * (7 - layer))
    for code in sorted(codes):
        g = MACRO.to_graph(MACRO.parse(code))
        assert (g.params(), g.flops()) == (table[code]["params"], table[code]["flops"])


def test_macro_lookup_and_known():
    require_data("nasbench/nas-bench-macro_cifar10.json")
    table = {g.to_str(): r for g, r in load_macro()}
    best = max(table.values(), key=lambda r: r["mean_acc"])
    res = MACRO.lookup(MACRO.resolve("best"), "cifar10")
    assert res == {"accuracy": pytest.approx(best["mean_acc"]), "accuracy_std": best["std"]}
    assert res["accuracy"] == pytest.approx(93.1267, abs=1e-4)
    rec = table["00000000"]
    assert MACRO.lookup(MACRO.parse("00000000"), "cifar10")["accuracy"] == rec["mean_acc"]
    assert rec["mean_acc"] == pytest.approx(np.mean(rec["test_acc"]))
    with pytest.raises(UnknownName, match="only 'cifar10'"):
        MACRO.lookup(MACRO.parse("00000000"), "cifar100")
    assert MACRO.has_table()


def test_macro_equivalent_codes_share_records_and_hashes():
    require_data("nasbench/nas-bench-macro_cifar10.json")
    table = {g.to_str(): r for g, r in load_macro()}
    for geno in (parse_nbmacro(c) for c in table):
        assert table[geno.canonical().to_str()] == table[geno.to_str()]
    rng = random.Random(0)
    for code in rng.sample(sorted(table), 5):
        geno = parse_nbmacro(code)
        a = MACRO.to_graph(geno).canonical_hash()
        assert a == MACRO.to_graph(geno.canonical()).canonical_hash()
    assert parse_nbmacro("20120102").canonical().to_str() == "20120120"
    h1 = MACRO.to_graph(MACRO.parse("21000000")).canonical_hash()
    assert h1 != MACRO.to_graph(MACRO.parse("12000000")).canonical_hash()


def test_macro_parse_round_trip_and_errors():
    geno = parse_nbmacro("01201120")
    assert geno.to_str() == "01201120" and MACRO.parse(geno.to_str()) == geno
    assert MACRO.parse("(0, 1, 2, 0, 1, 1, 2, 0)") == geno == MACRO.parse("0,1,2,0,1,1,2,0")
    assert MACRO.from_indices(MACRO.to_indices(geno)) == geno
    rng = np.random.default_rng(1)
    for _ in range(5):
        s = MACRO.sample(rng)
        assert MACRO.parse(s.to_str()) == s and MACRO.contains(s)
    for bad, msg in [
        ("0120112", "has 7 layer choices; expected an 8-character code"),
        ("012011201", "has 9 layer choices"),
        ("01201123", "layer 7 of '01201123' is '3'"),
        ("0120112a", "layer 7 of '0120112a' is 'a'"),
    ]:
        with pytest.raises(InvalidGenotype, match=msg):
            MACRO.parse(bad)
    with pytest.raises(InvalidGenotype, match="ops\\[2\\] is 5"):
        NBMacroGenotype((0, 0, 5, 0, 0, 0, 0, 0))
    with pytest.raises(InvalidGenotype, match="needs 8 layer choices"):
        NBMacroGenotype((0,) * 7)
    assert not MACRO.contains(SPOS.resolve("SPOS"))


def test_macro_digits_network_runs():
    import jax.numpy as jnp

    from nas.model import build_model, count_model_params

    g = MACRO.to_graph(MACRO.parse("22212220"), "digits")
    assert g.shape(g.input) == (8, 8, 1) and g.shape(g.output) == (10,)
    model = build_model(g, seed=0)
    model.eval()
    y = model(jnp.ones((2, 8, 8, 1)))
    assert y.shape == (2, 10) and bool(jnp.all(jnp.isfinite(y)))
    assert count_model_params(model) == g.params()


def test_macro_load_macro_returns_copies():
    require_data("nasbench/nas-bench-macro_cifar10.json")
    first = load_macro()
    first[0][1]["test_acc"].append(0.0)
    again = load_macro()
    assert len(again[0][1]["test_acc"]) == 3
    assert json.dumps(again[0][1])  # plain JSON-able records
