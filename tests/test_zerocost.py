"""Zero-cost proxies: the numpy interpreter's gradients, and agreement with NASLib's scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nas.graph import ArchGraph
from tests.conftest import require_data

NASLIB = "nasbench/naslib_zc_nasbench201.json"


def _toy() -> ArchGraph:
    """Every op kind the interpreter differentiates, on a 9x9 map."""
    layers = [
        ("conv", {"out_channels": 8, "kernel": 3, "stride": 2, "padding": 1, "bias": True}),
        ("batch_norm", {}),
        ("hswish", {}),
        ("max_pool", {"kernel": 3, "stride": 2, "padding": 1}),
        ("conv", {"out_channels": 8, "kernel": 3, "groups": 8, "padding": 2, "dilation": 2}),
        ("swish", {}),
        ("avg_pool", {"kernel": 3, "padding": 1, "count_include_pad": False}),
        ("conv", {"out_channels": 6, "kernel": 1, "groups": 2}),
        ("gelu", {}),
        ("channel_shuffle", {"groups": 2}),
        ("pad", {"top": 1, "left": 2}),
        ("crop", {"bottom": 1, "right": 1}),
        ("split", {"start": 1, "size": 4}),
        ("tanh", {}),
        ("global_pool", {"mode": "max"}),
        ("dense", {"out_features": 5}),
    ]
    return ArchGraph.sequential((9, 9, 4), layers)


def test_backward_matches_finite_differences():
    from nas.predictors.zerocost.engine import Network

    net = Network(_toy(), seed=1, dtype=np.float64, bn="train")
    x = np.random.default_rng(0).normal(size=(3, 9, 9, 4))
    out, tape = net.forward(x)
    r = np.random.default_rng(1).normal(size=out.shape)
    gx, gw = net.backward(tape, r)

    def f(xx):
        return float((net.forward(xx)[0] * r).sum())

    rng = np.random.default_rng(2)
    for _ in range(6):
        idx = tuple(int(rng.integers(0, s)) for s in x.shape)
        e = np.zeros_like(x)
        e[idx] = 1e-6
        assert abs((f(x + e) - f(x - e)) / 2e-6 - gx[idx]) < 1e-5 * max(1.0, abs(gx[idx]))
    node = sorted(gw)[1]  # the depthwise conv's kernel
    k = net.weights[node]["kernel"]
    i = (3, 2, 0)
    k[i] += 1e-6
    up = f(x)
    k[i] -= 2e-6
    down = f(x)
    k[i] += 1e-6
    assert abs((up - down) / 2e-6 - gw[node]["kernel"][i]) < 1e-5


def test_synflow_and_counts_agree_with_naslib():
    """Our synflow on NASLib's own cells: float64, BatchNorm removed, PyTorch's initial
    weight scale, so the values themselves come out close (NASLib's reach 112: float32
    would overflow), not just the ranking."""
    data = json.loads(require_data(NASLIB).read_text())["nasbench201"]["cifar10"]
    from nas.predictors.zerocost.proxies import synflow
    from nas.search_spaces import get_space

    from benchmarks.zero_cost import NASLIB_OPS

    space = get_space("nb201")
    ours, theirs = [], []
    for key in list(data)[:6]:
        e = [NASLIB_OPS[int(v)] for v in key.strip("()").split(",")]
        arch = f"|{e[0]}~0|+|{e[1]}~0|{e[3]}~1|+|{e[2]}~0|{e[4]}~1|{e[5]}~2|"
        g = space.to_graph(space.parse(arch), "cifar10")
        assert g.params() == round(data[key]["params"] * 1e6)
        ours.append(synflow(g))
        theirs.append(data[key]["synflow"])
    np.testing.assert_allclose(ours, theirs, rtol=0.02)
    assert np.argsort(ours).tolist() == np.argsort(theirs).tolist()


def test_data_dependent_proxies_are_finite_and_seeded():
    from nas.predictors.zerocost import proxies as zc

    g = _toy()
    x, y = zc.digits_batch((9, 9, 4), 6, 0)
    for score in (zc.jacov(g, x), zc.snip(g, x, y), zc.grad_norm(g, x, y), zc.naswot(g, x)):
        assert np.isfinite(score)
    assert zc.snip(g, x, y, seed=3) == zc.snip(g, x, y, seed=3) != zc.snip(g, x, y, seed=4)


@pytest.mark.parametrize("bn", ["off", "eval"])
def test_batch_norm_modes(bn):
    from nas.predictors.zerocost.engine import Network

    g = ArchGraph.sequential((4, 4, 2), [("batch_norm", {}), ("global_pool", {})])
    out, _ = Network(g, bn=bn, dtype=np.float64).forward(np.full((1, 4, 4, 2), 2.0))
    expected = 2.0 if bn == "off" else 2.0 / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(out, expected)
