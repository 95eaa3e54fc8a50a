"""NAS-Bench-201: notation, skeleton, exact params/FLOPs, hash classes, table."""

from __future__ import annotations

import ast
import itertools
import json
import random

import pytest
from nas.search_spaces import get_space
from nas.search_spaces.nb201 import NB201Genotype, load_table, parse_nb201
from nas.search_spaces.nb201.ops import OPS

from nas.errors import InvalidGenotype, UnknownName
from tests.conftest import require_data

SPACE = get_space("nb201")
NASLIB_OPS = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
NASLIB_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}


def test_parse_round_trip_and_errors():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    g = parse_nb201(s)
    assert g.to_str() == s and SPACE.parse(g.to_str()) == g
    for bad, msg in [
        ("|nor_conv_3x3~0|+|conv~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("|nor_conv_3x3~0|+|none~0|none~1|", "not in NB201 notation"),
        ("|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read 'op~0'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "needs 2 inputs"),
    ]:
        with pytest.raises(InvalidGenotype, match=msg):
            parse_nb201(bad)
    with pytest.raises(InvalidGenotype, match="6 edge ops"):
        NB201Genotype(("none",) * 5)


def test_published_anchors():
    # Benchmark values: the all-3x3 cell (FLOPs 220.11969 M, the largest net: 1.531546 M params)
    # and the parameter-free cell (7.78305 M FLOPs) on CIFAR-10.
    g = SPACE.to_graph(SPACE.resolve("all_conv3x3"), "cifar10")
    assert (g.params(), g.flops()) == (1_531_546, 220_119_690)
    free = SPACE.parse("|none~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|")
    assert SPACE.to_graph(free, "cifar10").flops() == 7_783_050


def naslib_records():
    path = require_data("nasbench/naslib_zc_nasbench201.json")
    data = json.loads(path.read_text())["nasbench201"]
    for dataset, recs in data.items():
        for key, rec in recs.items():
            e = [NASLIB_OPS[i] for i in ast.literal_eval(key)]
            # NASLib's edges (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) in NB201 string order.
            ops = (e[0], e[1], e[3], e[2], e[4], e[5])
            yield dataset, NB201Genotype(ops), rec


def test_params_equal_the_benchmark_for_the_naslib_sample():
    n = 0
    for dataset, geno, rec in naslib_records():
        assert round(SPACE.to_graph(geno, dataset).params() / 1e6, 6) == pytest.approx(
            rec["params"], abs=1e-9
        ), (dataset, geno.to_str())
        n += 1
    assert n == 491 * 3


def _closed_form(ops, dataset: str) -> tuple[int, int]:
    """NB201 cost from its skeleton written as sums (independent of the IR)."""
    hw, classes = {"cifar10": (32, 10), "cifar100": (32, 100), "ImageNet16-120": (16, 120)}[dataset]
    params = 3 * 9 * 16 + 32 + 128 + 64 * classes + classes
    flops = hw * hw * 27 * 16 + 64 * classes + classes
    for c_in, c, res in ((16, 32, hw // 2), (32, 64, hw // 4)):
        params += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c + c_in * c
        flops += res * res * (9 * c_in * c + 9 * c * c + c_in * c)
    for c, res in ((16, hw), (32, hw // 2), (64, hw // 4)):
        for op in ops:
            k = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}.get(op)
            if k:
                params += 5 * (k * c * c + 2 * c)
                flops += 5 * res * res * k * c * c
    return params, flops


def test_counts_match_the_closed_form_on_a_random_sample():
    rnd = random.Random(0)
    all_ops = list(itertools.product(OPS, repeat=6))
    for ops in rnd.sample(all_ops, 60):
        for dataset in NASLIB_DATASETS:
            g = SPACE.to_graph(NB201Genotype(ops), dataset)
            assert (g.params(), g.flops()) == _closed_form(ops, dataset)


def test_hash_classes_equal_nb201_isomorphism_classes():
    table = load_table(str(require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")))
    rnd = random.Random(1)
    by_unique: dict[str, set[str]] = {}
    archs = rnd.sample(sorted(table), 1500)
    hashes = {}
    for a in archs:
        h = SPACE.to_graph(SPACE.parse(a), "cifar10").canonical_hash()
        hashes[a] = h
        by_unique.setdefault(str(table[a]["unique"]), set()).add(h)
    # Within one published isomorphism class, one hash, unless the class mixes weight sharing.
    split = [u for u, hs in by_unique.items() if len(hs) > 1]
    assert len(split) < 0.05 * len(by_unique)
    # Equal hashes only within one class once NB201's zero terms are removed (the hash
    # may split a class: NB201's string ignores whether two edges share one conv's output).
    owner: dict[str, str] = {}
    for u, hs in by_unique.items():
        canon = _strip_zero_terms(u)
        for h in hs:
            assert owner.setdefault(h, canon) == canon, (owner[h], u)
    assert len(set(owner)) > 0.8 * len(by_unique)


def _strip_zero_terms(u: str) -> str:
    """NB201's unique string with its '#' (zero) terms removed, sums sorted recursively.

    NB201 keeps zero terms in sums ('#+(0)@op' and '(0)@op' are different strings) and
    applies ops to zero sums ('(#+#)@nor_conv_3x3'); semantically x + 0 = x and op(0) = 0.
    """

    def parse_sum(s: str, i: int) -> tuple[list[str], int]:
        terms = []
        while True:
            t, i = parse_term(s, i)
            if t != "#":
                terms.append(t)
            if i < len(s) and s[i] == "+":
                i += 1
                continue
            return sorted(terms), i

    def parse_term(s: str, i: int) -> tuple[str, int]:
        if s[i] in "#0":
            return s[i], i + 1
        assert s[i] == "("
        inner, i = parse_sum(s, i + 1)
        assert s[i] == ")" and s[i + 1] == "@"
        j = i + 2
        while j < len(s) and (s[j].isalnum() or s[j] == "_"):
            j += 1
        op = s[i + 2 : j]
        return ("#" if not inner else "(" + "+".join(inner) + ")@" + op), j

    terms, end = parse_sum(u, 0)
    assert end == len(u), u
    return "+".join(terms) or "#"


def test_table_lookup_and_errors():
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    best = SPACE.resolve("best_cifar10")
    assert SPACE.lookup(best, "cifar10")["accuracy"] == pytest.approx(94.37333, abs=1e-4)
    assert (
        max(r["cifar10"] for r in load_table().values())
        == SPACE.lookup(best, "cifar10")["accuracy"]
    )
    assert len(load_table()) == 15625
    with pytest.raises(UnknownName, match="no dataset 'svhn'"):
        SPACE.lookup(best, "svhn")
    with pytest.raises(UnknownName, match="no network for dataset"):
        SPACE.to_graph(best, "mnist")
