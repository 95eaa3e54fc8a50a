"""Once-for-All spaces: exact counts, published networks, genotype notation and errors.

Reference numbers were produced by OFA's own code (mit-han-lab/once-for-all,
``count_parameters`` and ``count_net_flops`` on ``MobileNetV3.build_from_config`` /
``ProxylessNASNets.build_from_config`` / ``OFAMobileNetV3.get_active_subnet``, torch CPU).
OFA sums per-layer FLOPs in float32, so its printed totals differ from the exact integer
MAC count by a few tens; ``ofa_profile_flops`` reproduces them bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from nas.search_spaces import get_space
from nas.search_spaces.ofa import specialized
from nas.search_spaces.ofa.network import ofa_profile_flops
from nas.search_spaces.ofa.space import RESOLUTIONS, OFAGenotype, OFAProxylessGenotype
from nas.search_spaces.ofa.specialized import OFANetGenotype

from nas.errors import ConfigError, InvalidGenotype
from nas.graph import ArchGraph
from tests.conftest import require_data

# net id -> (params, exact MACs, the FLOPs OFA's count_net_flops prints)
PUBLISHED = {
    "1080ti_gpu64-12ms_top1-72.6_finetune-25": (5903488, 164964352, 164964352),
    "1080ti_gpu64-15ms_top1-73.8_finetune-25": (6042264, 225760960, 225760960),
    "1080ti_gpu64-22ms_top1-75.3_finetune-25": (5186720, 312808424, 312808416),
    "1080ti_gpu64-27ms_top1-76.4_finetune-25": (6493328, 396707912, 396707904),
    "LG-G8_lat-11ms_top1-73.0_finetune-25": (4965160, 103373272, 103373272),
    "LG-G8_lat-16ms_top1-74.7_finetune-25": (5809576, 151108528, 151108528),
    "LG-G8_lat-24ms_top1-76.4_finetune-25": (5809576, 229846296, 229846304),
    "LG-G8_lat-8ms_top1-71.1_finetune-25": (4112176, 73471032, 73471032),
    "cpu_lat-10ms_top1-71.1_finetune-25": (4158272, 143192752, 143192752),
    "cpu_lat-11ms_top1-72.0_finetune-25": (4394600, 160315320, 160315328),
    "cpu_lat-15ms_top1-74.6_finetune-25": (4875704, 300991560, 300991552),
    "cpu_lat-17ms_top1-75.7_finetune-25": (4933568, 364488032, 364488032),
    "flops-389M_top1-79.1_finetune-75": (8386544, 389487856, 389487872),
    "flops-482M_top1-79.6_finetune-75": (9066368, 482413168, 482413184),
    "flops-595M_top1-80.0_finetune-75": (9135928, 595189032, 595188992),
    "note10_lat-11ms_top1-73.6_finetune-25": (4278224, 109607488, 109607488),
    "note10_lat-16ms_top1-75.5_finetune-25": (4932272, 162464384, 162464384),
    "note10_lat-22ms_top1-76.6_finetune-25": (5863056, 237063424, 237063424),
    "note10_lat-30ms_top1-78.4_finetune-75": (7465896, 339352816, 339352832),
    "note10_lat-41ms_top1-79.3_finetune-75": (9030192, 457252856, 457252864),
    "note10_lat-50ms_top1-79.7_finetune-75": (9057064, 554390264, 554390272),
    "note10_lat-64ms_top1-80.2_finetune-75": (9109040, 743131000, 743131008),
    "note10_lat-8ms_top1-71.4_finetune-25": (3761168, 75802880, 75802880),
    "note8_lat-22ms_top1-70.4_finetune-25": (4304592, 67196888, 67196888),
    "note8_lat-31ms_top1-72.8_finetune-25": (4595536, 100520248, 100520248),
    "note8_lat-49ms_top1-74.9_finetune-25": (6024176, 163703024, 163703024),
    "note8_lat-65ms_top1-76.1_finetune-25": (5296672, 219899816, 219899808),
    "pixel1_lat-132ms_top1-79.8_finetune-75": (9225040, 592737144, 592737152),
    "pixel1_lat-143ms_top1-80.1_finetune-75": (9221888, 641756192, 641756160),
    "pixel1_lat-20ms_top1-71.4_finetune-25": (4304592, 76664384, 76664384),
    "pixel1_lat-28ms_top1-73.3_finetune-25": (5196680, 108572320, 108572320),
    "pixel1_lat-40ms_top1-74.9_finetune-25": (6024176, 162265088, 162265088),
    "pixel1_lat-58ms_top1-76.9_finetune-75": (5809576, 229846296, 229846304),
    "pixel1_lat-79ms_top1-78.7_finetune-75": (8168608, 355469648, 355469632),
    "pixel2_lat-25ms_top1-71.5_finetune-25": (4137152, 79266240, 79266240),
    "pixel2_lat-35ms_top1-73.4_finetune-25": (5060264, 113041536, 113041536),
    "pixel2_lat-50ms_top1-74.7_finetune-25": (4687720, 165999448, 165999456),
    "pixel2_lat-62ms_top1-75.8_finetune-25": (5809576, 207945168, 207945168),
    "s7edge_lat-29ms_top1-70.5_finetune-25": (3830224, 66444032, 66444032),
    "s7edge_lat-41ms_top1-73.1_finetune-25": (4663872, 95935136, 95935136),
    "s7edge_lat-58ms_top1-74.7_finetune-25": (4623312, 144701952, 144701952),
    "s7edge_lat-88ms_top1-76.3_finetune-25": (6426992, 219276928, 219276928),
    "tx2_gpu16-35ms_top1-70.3_finetune-25": (4315144, 121204736, 121204736),
    "tx2_gpu16-47ms_top1-72.9_finetune-25": (4933568, 179272800, 179272800),
    "tx2_gpu16-80ms_top1-75.4_finetune-25": (5186720, 312808424, 312808416),
    "tx2_gpu16-96ms_top1-75.8_finetune-25": (6163200, 348919456, 348919456),
    "v100_gpu64-11ms_top1-76.1_finetune-25": (6195512, 351764864, 351764864),
    "v100_gpu64-5ms_top1-71.6_finetune-25": (5186720, 141197824, 141197824),
    "v100_gpu64-6ms_top1-73.0_finetune-25": (4933568, 179272800, 179272800),
    "v100_gpu64-9ms_top1-75.3_finetune-25": (5186720, 312808424, 312808416),
}


# OFA's Python-dict style (as sample_active_subnet returns it; no resolution means 224).
MIXED_OFA_STYLE = str({"ks": [3, 5, 7, 5] * 5, "e": [4, 6, 3, 4] * 5, "d": [2, 3, 4, 3, 2]})


@pytest.fixture(scope="module")
def data_ids() -> list[str]:
    require_data(specialized.SPECIALIZED_DIR)  # fails under CI when missing
    return specialized.specialized_ids()


@pytest.fixture(scope="module")
def ofa():
    return get_space("ofa")


@pytest.fixture(scope="module")
def prox():
    return get_space("ofa-proxyless")


def _space_for(g: OFANetGenotype):
    return get_space(specialized.SPACE_OF_FAMILY[g.net.family])


# ---------------------------------------------------------------------------------- counts


def test_largest_mbv3_w10_subnet_is_exact(ofa):
    g = ofa.resolve("max")
    assert g == OFAGenotype((7,) * 20, (6,) * 20, (4,) * 5, 224)
    graph = ofa.to_graph(g)
    assert graph.params() == 7_664_760
    assert graph.flops() == 566_170_656
    assert ofa_profile_flops(graph) == 566_170_688  # what OFA's float32 counter prints
    assert graph.shape(graph.input) == (224, 224, 3)
    assert graph.shape(graph.output) == (1000,)


@pytest.mark.parametrize(
    ("space", "width", "arch", "params", "ofa_flops"),
    [
        ("ofa", 1.0, '{"ks":3,"e":3,"d":2,"r":160}', 3_410_792, 63_240_528),
        ("ofa", 1.2, '{"ks":7,"e":6,"d":4,"r":224}', 10_701_632, 843_101_056),
        ("ofa", 1.2, MIXED_OFA_STYLE, 6_450_184, 390_532_800),
        ("ofa-proxyless", 1.3, '{"ks":7,"e":6,"d":4}', 7_942_056, 1_004_907_968),
        ("ofa-proxyless", 1.3, '{"ks":3,"e":3,"d":[2,2,2,2,2,1],"r":160}', 3_718_832, 136_287_600),
        ("ofa-proxyless", 1.0, '{"ks":7,"e":6,"d":4,"r":160}', 5_103_336, 310_112_000),
    ],
)
def test_elastic_counts_match_ofa(space, width, arch, params, ofa_flops):
    s = get_space(space, width_mult=width)
    graph = s.to_graph(s.parse(arch))
    assert graph.params() == params
    assert ofa_profile_flops(graph) == ofa_flops
    assert abs(graph.flops() - ofa_flops) < 128


def test_mobilenet_v3_large(ofa):
    g = ofa.resolve("MobileNetV3-Large")
    assert isinstance(g, OFANetGenotype) and g.resolution == 224
    graph = ofa.to_graph(g)
    assert graph.params() == 5_481_752  # published: 5.4M
    assert graph.flops() == 216_589_760  # published: 217M (OFA's table)
    assert round(graph.flops() / 1e6) == 217
    assert ofa.elastic_of(g) is None  # middle widths 200, 184 are not expand 3/4/6
    assert not ofa.contains(g)
    with pytest.raises(InvalidGenotype, match="static network"):
        ofa.to_indices(g)
    # SE as OFA's SEModule: make_divisible(72 // 4, 8) = 24 channels, biases on both convs.
    reduce = [
        n for n in graph.g if graph.g.nodes[n]["scope"] == "blocks/3/conv/depth_conv/se/fc/reduce"
    ]
    assert [graph.shape(n) for n in reduce] == [(1, 1, 24)]
    assert graph.node_params(reduce[0]) == 72 * 24 + 24
    assert graph.op_counts()["mul"] == 8  # eight SE blocks
    with pytest.raises(InvalidGenotype, match="ofa-proxyless|mbv3"):
        get_space("ofa-proxyless").resolve("MobileNetV3-Large")


# ---------------------------------------------------------------------------------- published


def test_every_published_network_loads_and_counts_exactly(data_ids, ofa, prox):
    assert sorted(data_ids) == sorted(PUBLISHED)
    assert len(ofa.published()) == 34 and len(prox.published()) == 16
    for net_id, (params, macs, ofa_flops) in PUBLISHED.items():
        g = specialized.load_specialized(net_id)
        graph = _space_for(g).to_graph(g)
        assert (graph.params(), graph.flops(), ofa_profile_flops(graph)) == (
            params,
            macs,
            ofa_flops,
        ), net_id


def test_flops_budgets_in_names(data_ids):
    budgets = {i: specialized.flops_budget(i) for i in data_ids}
    stated = {i: b for i, b in budgets.items() if b is not None}
    assert stated == {
        "flops-389M_top1-79.1_finetune-75": 389,
        "flops-482M_top1-79.6_finetune-75": 482,
        "flops-595M_top1-80.0_finetune-75": 595,
    }
    for net_id, budget in stated.items():
        g = specialized.load_specialized(net_id)
        graph = get_space("ofa").to_graph(g)
        assert round(graph.flops() / 1e6) == budget
        assert round(ofa_profile_flops(graph) / 1e6) == budget


def test_resolve_paths_and_ids(data_ids, ofa, prox):
    root = specialized.specialized_root()
    folder = root / "flops-595M_top1-80.0_finetune-75"
    a = ofa.resolve(str(folder / "net.config"))
    b = ofa.resolve(str(folder))
    c = ofa.resolve("flops@595M_top1@80.0_finetune@75")  # OFA's model-zoo spelling
    assert a == b == c and a.resolution == 236 and a.name == folder.name
    assert a.net.first_conv.out_channels == 24 and len(a.net.blocks) == 20
    # A published network parses back from its native string and from the raw net.config.
    assert ofa.parse(a.to_str()) == a
    raw = json.loads((folder / "net.config").read_text())
    assert ofa.parse(json.dumps({**raw, "image_size": 236})) == a
    # Family mismatch names the right space.
    with pytest.raises(InvalidGenotype, match="'ofa-proxyless'"):
        ofa.resolve("cpu_lat-10ms_top1-71.1_finetune-25")
    p = prox.resolve("cpu_lat-10ms_top1-71.1_finetune-25")
    assert p.space_name == "ofa-proxyless" and p.resolution == 144


def test_published_networks_are_subnets_of_the_elastic_spaces(data_ids):
    """Each published net builds the same graph as an elastic genotype of its supernet
    (w1.0/w1.2 MobileNetV3, w1.3 ProxylessNAS) whenever its resolution is on the grid."""
    spaces = {
        16: get_space("ofa", width_mult=1.0),
        24: get_space("ofa", width_mult=1.2),
        40: get_space("ofa-proxyless", width_mult=1.3),
    }
    on_grid = 0
    for net_id in data_ids:
        g = specialized.load_specialized(net_id)
        el = specialized.to_elastic(g)
        assert el is not None and el["r"] == g.resolution, net_id
        if g.resolution in RESOLUTIONS:
            found = spaces[g.net.first_conv.out_channels].elastic_of(g)
            assert found is not None and found.to_ofa()["image_size"] == g.resolution, net_id
            on_grid += 1
    assert on_grid == 46  # four nets (228, 236, 240, 260) lie outside 128..224


# ---------------------------------------------------------------------------------- genotype


def test_native_string_round_trip_and_ofa_dict_style(ofa, prox):
    rng = np.random.default_rng(0)
    for space in (ofa, prox):
        for _ in range(20):
            g = space.sample(rng)
            assert space.parse(g.to_str()) == g
            assert space.from_indices(space.to_indices(g)) == g
            assert space.decode(space.encode(g)) == g
            assert space.resolve(g.to_json()["arch"]) == g
    g = ofa.parse(
        '{"ks":[7,5,3,3, 5,5,5,5, 3,3,3,3, 7,7,7,7, 5,5,5,5],"e":4,"d":[2,4,3,4,4],"r":192}'
    )
    assert g.to_str().startswith('{"ks":[7,5,3,3,5,5,5,5,3,3,3,3,7,7,7,7,5,5,5,5],"e":[4,4,3,3,')
    # OFA's own spellings: Python dict text, image_size, a one-element r list, wid None.
    ofa_style = str(
        {"wid": None, "ks": list(g.ks), "e": list(g.e), "d": [2, 4, 3, 4, 4], "r": [192]}
    )
    assert "'ks'" in ofa_style
    assert ofa.parse(ofa_style) == g
    assert ofa.parse(json.dumps({**g.to_ofa()})) == g
    assert ofa.parse('{"ks":7,"e":6,"d":4}').resolution == 224
    # ProxylessNAS: OFA's six-entry d (last unit fixed at one layer) and the 21st layer.
    p = prox.parse('{"ks":5,"e":4,"d":[3,3,3,3,3,1],"r":128}')
    assert isinstance(p, OFAProxylessGenotype) and len(p.ks) == 21 and p.d == (3,) * 5
    assert p.to_ofa()["d"] == [3, 3, 3, 3, 3, 1]
    assert prox.to_graph(p).shape(prox.to_graph(p).output) == (1000,)


def test_inactive_layers_are_normalised(ofa):
    a = OFAGenotype((7,) * 20, (6,) * 20, (2,) * 5, 200)
    b = OFAGenotype(tuple(7 if i % 4 < 2 else 5 for i in range(20)), (6,) * 20, (2,) * 5, 200)
    assert a == b and hash(a) == hash(b)
    assert a.ks[2:4] == (3, 3) and a.e[2:4] == (3, 3)
    assert ofa.to_graph(a).canonical_hash() == ofa.to_graph(b).canonical_hash()
    c = OFAGenotype(tuple(7 if i % 4 < 2 else 5 for i in range(20)), (6,) * 20, (3,) * 5, 200)
    assert c != a and c.ks[2] == 5


def test_mutation_changes_one_live_decision(ofa, prox):
    rng = np.random.default_rng(1)
    for space in (ofa, prox):
        g = space.parse('{"ks":5,"e":4,"d":2,"r":160}')
        for _ in range(30):
            m = space.mutate(g, rng)
            assert m != g
            diff = [
                i
                for i, (x, y) in enumerate(
                    zip(space.to_indices(g), space.to_indices(m), strict=True)
                )
                if x != y
            ]
            assert len(diff) == 1
        nb = space.neighbours(g)
        assert len(nb) == len(set(nb)) and g not in nb
        live = 5 * 2 * 2 + (2 if space is prox else 0)  # ks and e of active layers
        assert len(nb) == live * 2 + 5 * 2 + (len(RESOLUTIONS) - 1)
    assert ofa.size == 7371**5 * 25  # OFA's "about 2e19 subnets" times 25 resolutions
    assert prox.size == 7371**5 * 9 * 25


def test_graph_json_round_trip_and_scopes(ofa):
    g = ofa.parse('{"ks":5,"e":6,"d":2}')
    graph = ofa.to_graph(g)
    again = ArchGraph.loads(graph.dumps())
    assert again.canonical_hash() == graph.canonical_hash()
    scopes = {graph.g.nodes[n]["scope"] for n in graph.g}
    # OFA's supernet numbering: unit 2 starts at block 5 even when unit 1 has 2 layers.
    assert (
        "blocks/5/conv/depth_conv/conv" in scopes and "blocks/3/conv/depth_conv/conv" not in scopes
    )
    assert "blocks/6" in scopes  # the residual add of the second layer of unit 2
    assert graph.meta["width_mult"] == 1.0 and graph.meta["resolution"] == 224


def test_digits_dataset(ofa, prox):
    g = ofa.resolve("min")
    graph = ofa.to_graph(g, "digits")  # served at the genotype's resolution, in RGB
    r = g.resolution
    assert graph.shape(graph.input) == (r, r, 3) and graph.shape(graph.output) == (10,)
    assert graph.meta["dataset"] == "digits"
    assert ofa.default_dataset == "imagenet" and set(ofa.datasets) == {"imagenet", "digits"}
    big = ofa.to_graph(ofa.resolve("MobileNetV3-Large"), "digits")
    assert big.shape(big.output) == (10,)
    pg = prox.to_graph(prox.resolve("max"), "digits")
    r = prox.resolve("max").resolution
    assert pg.shape(pg.input) == (r, r, 3) and pg.shape(pg.output) == (10,)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"ks":4,"e":6,"d":4,"r":224}', r"ks\[0\] = 4 is not one of \[3, 5, 7\]"),
        ('{"ks":7,"e":5,"d":4,"r":224}', r"e\[0\] = 5"),
        ('{"ks":7,"e":6,"d":[4,4,5,4,4],"r":224}', r"d\[2\] = 5 is not one of \[2, 3, 4\]"),
        ('{"ks":7,"e":6,"d":4,"r":130}', r"resolution r=130 is not on OFA's grid"),
        ('{"ks":7,"e":6,"d":4,"r":228}', r"resolution r=228"),
        ('{"ks":[7,7],"e":6,"d":4}', r"ks must list 20 values"),
        ('{"ks":7,"e":6}', r"lacks \['d'\]"),
        ('{"ks":7,"e":6,"d":4,"depth":3}', r"unknown genotype keys \['depth'\]"),
        ('{"ks":7,"e":6,"d":4,"r":224,"image_size":224}', r"resolution once"),
        ("not a genotype", r"neither a genotype"),
        ("[7, 6, 4]", r"a JSON object with ks, e, d and r"),
        ('{"ks":true,"e":6,"d":4}', r"ks must list 20"),
    ],
)
def test_malformed_genotypes(ofa, text, match):
    with pytest.raises(InvalidGenotype, match=match):
        ofa.parse(text)


def test_malformed_indices_widths_and_networks(ofa, prox):
    with pytest.raises(InvalidGenotype, match="46 option indices"):
        ofa.from_indices([0] * 45)
    with pytest.raises(InvalidGenotype, match="46 option indices"):
        ofa.from_indices([0] * 45 + [25])
    with pytest.raises(InvalidGenotype, match=r"d\[5\]"):
        prox.parse('{"ks":7,"e":6,"d":[4,4,4,4,4,7]}')
    with pytest.raises(ConfigError, match="width multiplier 1.1"):
        get_space("ofa", width_mult=1.1)
    assert get_space("ofa-proxyless").width_mult == 1.3
    big = ofa.resolve("MobileNetV3-Large").to_dict()
    broken = dict(
        big,
        blocks=[
            b if i != 4 else [40, 4, 1, None, 120, "relu", 1, 1]
            for i, b in enumerate(big["blocks"])
        ],
    )
    with pytest.raises(InvalidGenotype, match="block 4 kernel must be odd"):
        ofa.parse(json.dumps(broken))
    broken = dict(
        big,
        blocks=[
            b if i != 1 else [24, 3, 2, 4, 64, "relu", 0, 1] for i, b in enumerate(big["blocks"])
        ],
    )
    with pytest.raises(InvalidGenotype, match="block 1 has an identity shortcut"):
        ofa.parse(json.dumps(broken))
    with pytest.raises(InvalidGenotype, match="unknown activation 'gelu6'"):
        ofa.parse(json.dumps(dict(big, first_conv=[16, 3, 2, 0, 1, "gelu6"])))
