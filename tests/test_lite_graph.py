"""The light graph for fresh candidates gives exactly the reference path's features."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "features_v7.json"


def _same(a, b) -> bool:
    return (
        np.array_equal(a.nodes, b.nodes)
        and np.array_equal(a.senders, b.senders)
        and np.array_equal(a.receivers, b.receivers)
        and np.array_equal(a.globals, b.globals)
    )


def _unlike_ir(archs, dataset) -> list[str]:
    """The cells whose light graph differs from the IR graph in costs or features."""
    from nas.predictors.features import graph_features
    from nas.predictors.lite import lite_graph
    from nas.search_spaces import get_space

    sp = get_space("nb201")
    bad = []
    for arch in archs:
        ir = sp.to_graph(sp.parse(arch), dataset)
        lite = lite_graph("nb201", arch, dataset)
        same_cost = lite.flops() == ir.flops() and lite.params() == ir.params()
        if not (same_cost and _same(graph_features(lite), graph_features(ir))):
            bad.append(arch)
    return bad


@pytest.mark.slow
def test_every_nb201_cell_gets_the_ir_graphs_features():
    """All 15,625 cells on CIFAR-10 (the light graph is spliced from pieces)."""
    import itertools

    from nas.search_spaces import get_space
    from nas.search_spaces.nb201.ops import OPS

    sp = get_space("nb201")
    cells = itertools.product(range(len(OPS)), repeat=6)
    assert _unlike_ir([sp.from_indices(c).to_str() for c in cells], "cifar10") == []


@pytest.mark.parametrize("dataset", ["cifar10", "ImageNet16-120"])
def test_nb201_light_graph_features_equal_the_ir_graphs(dataset):
    """The fast path (a spliced light graph) against the reference (the IR graph) on 200
    random cells and the all-``none`` one (every cell is zero)."""
    from nas.search_spaces import get_space

    sp = get_space("nb201")
    rng = np.random.default_rng(3)
    archs = [sp.sample(rng).to_str() for _ in range(200)]
    assert _unlike_ir([*archs, sp.smallest().to_str()], dataset) == []


@pytest.mark.parametrize("dataset", ["cifar10", "ImageNet16-120", "digits"])
def test_nb201_spliced_light_graphs_are_the_space_codes(dataset):
    """The light graph spliced from pieces (skeleton, edge ops, adds) has the nodes, inputs,
    attributes and scopes that the space code builds into a LiteGraph, for every op on
    every edge."""
    from nas.predictors.lite import LiteGraph, lite_graph
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import network

    sp = get_space("nb201")
    shape, classes = network.DATASETS[dataset]
    channels, cells = sp.skeleton(dataset)
    rng = np.random.default_rng(5)
    archs = [sp.sample(rng).to_str() for _ in range(200)]
    archs += [sp.from_indices([i] * 6).to_str() for i in range(5)]
    for arch in archs:
        g = LiteGraph(network.NB201_CONVENTION)
        built = network.build(sp.parse(arch).ops, shape, classes, channels, cells, graph=g)
        spliced = lite_graph("nb201", arch, dataset)
        assert spliced._op == built._op and spliced._inputs == built._inputs, arch
        assert spliced._scope == built._scope and spliced._io == built._io, arch
        assert all(a is b for a, b in zip(spliced._rec, built._rec, strict=True)), arch


def test_feature_store_uses_it_for_references_only(tmp_path):
    from nas.predictors.features import ArchRef, FeatureStore, graph_features
    from nas.predictors.lite import lite_graph
    from nas.search_spaces import get_space

    sp = get_space("nb201")
    arch = sp.sample(np.random.default_rng(4)).to_str()
    ref = ArchRef("nb201", arch, "cifar10")
    (cached,) = FeatureStore(tmp_path).get([ref])
    (direct,) = FeatureStore(False).get([sp.to_graph(sp.parse(arch), "cifar10")])
    assert _same(cached, direct)
    assert lite_graph("nb101", "anything", "cifar10") is None  # no light builder: the IR
    assert graph_features(lite_graph("nb201", arch, "cifar10")).num_nodes == direct.num_nodes


def _digest(f) -> str:
    h = hashlib.sha256()
    for a in (f.nodes, f.senders, f.receivers, f.globals):
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def test_features_are_those_the_cache_holds():
    """The features of 48 graphs of 13 spaces are bit for bit those that
    FEATURE_VERSION 7 first wrote (digests taken before per-node infos sped it up): the
    on-disk caches stay valid and fast path and reference path share one definition."""
    from nas.predictors.features import FEATURE_VERSION, graph_features
    from nas.search_spaces import get_space

    assert FEATURE_VERSION == 7  # a new version: write new digests
    rows = json.loads(GOLDEN.read_text())
    assert len({r["space"] for r in rows}) == 13
    for r in rows:
        sp = get_space(r["space"])
        gt = sp.parse(r["arch"])
        g = sp.to_graph(gt, r["dataset"]) if r["dataset"] else sp.to_graph(gt)
        assert _digest(graph_features(g)) == r["sha256"], (r["space"], r["arch"])
