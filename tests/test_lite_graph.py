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


@pytest.mark.parametrize("dataset", ["cifar10", "ImageNet16-120"])
def test_nb201_light_graph_features_equal_the_ir_graphs(dataset):
    from nas.predictors.features import graph_features
    from nas.predictors.lite import lite_graph
    from nas.search_spaces import get_space

    sp = get_space("nb201")
    rng = np.random.default_rng(3)
    archs = [sp.sample(rng).to_str() for _ in range(300)]
    archs += [sp.smallest().to_str()]  # every edge none: the cells are all zero
    for arch in archs:
        ir = sp.to_graph(sp.parse(arch), dataset)
        lite = lite_graph("nb201", arch, dataset)
        assert lite.flops() == ir.flops() and lite.params() == ir.params()
        assert _same(graph_features(lite), graph_features(ir)), arch


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
    """The features of 48 graphs of 15 spaces are bit for bit those that
    FEATURE_VERSION 7 first wrote (digests taken before per-node infos sped it up): the
    on-disk caches stay valid and fast path and reference path share one definition."""
    from nas.predictors.features import FEATURE_VERSION, graph_features
    from nas.search_spaces import get_space

    assert FEATURE_VERSION == 7  # a new version: write new digests
    rows = json.loads(GOLDEN.read_text())
    assert len({r["space"] for r in rows}) == 15
    for r in rows:
        sp = get_space(r["space"])
        gt = sp.parse(r["arch"])
        g = sp.to_graph(gt, r["dataset"]) if r["dataset"] else sp.to_graph(gt)
        assert _digest(graph_features(g)) == r["sha256"], (r["space"], r["arch"])
