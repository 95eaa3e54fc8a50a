"""DARTS differentiable search: mixed ops, bilevel steps, derivation, CLI end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nas.search_spaces.darts import DartsSpace
from nas.search_spaces.darts.genotypes import PRIMITIVES
from nas.search_spaces.darts.search import DartsSearchConfig, darts_search, derive_cell
from nas.search_spaces.darts.supernet import (
    EDGES,
    DartsSupernet,
    SearchCell,
    edge_group,
    init_edges,
    mixed_op,
)

from tests.conftest import run_cli


@pytest.mark.parametrize("stride", [1, 2])
def test_mixed_op_is_the_weighted_sum_of_the_ops(stride):
    rng = np.random.default_rng(0)
    p = {k: jnp.asarray(v[0]) for k, v in init_edges(rng, 1, 4, reduction=True).items()}
    x = jnp.asarray(rng.standard_normal((4, 4, 4, 4), np.float32))
    eye = np.eye(len(PRIMITIVES), dtype=np.float32)
    singles = [mixed_op(x, p, jnp.asarray(eye[k]), stride) for k in range(len(PRIMITIVES))]
    assert float(jnp.abs(singles[0]).max()) == 0.0  # `none` contributes zeros
    assert singles[1].shape == (4, 4 // stride, 4 // stride, 4)
    w = jax.nn.softmax(jnp.asarray(rng.standard_normal(len(PRIMITIVES), np.float32)))
    mixed = mixed_op(x, p, w, stride)
    expected = sum(w[k] * singles[k] for k in range(len(PRIMITIVES)))
    np.testing.assert_allclose(mixed, expected, rtol=1e-4, atol=1e-5)
    # The shifted-multiply-add and dense (depthwise x pointwise) forms equal the textbook
    # XLA depthwise + 1x1 form.
    ref = mixed_op(x, p, w, stride, "depthwise")
    for impl in ("shift", "dense", "native"):
        np.testing.assert_allclose(mixed_op(x, p, w, stride, impl), ref, atol=1e-4)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "impl,c",
    # native at 4 channels: scalar depthwise + einsum; at 8 and 16: the fused kernel
    [("shift", 4), ("dense", 4), ("native", 4), ("native", 8), ("native", 16)],
)
def test_edge_group_equals_the_reference_mixed_ops_and_their_gradients(stride, impl, c):
    # The fast path (shared pools, shifted pools, custom-VJP depthwise, batched first stage)
    # against the plain per-edge reference (reduce_window pools, XLA grouped convs).
    rng = np.random.default_rng(1)
    n = 3
    p = {k: jnp.asarray(v) for k, v in init_edges(rng, n, c, reduction=True).items()}
    x = jnp.asarray(rng.standard_normal((3, 6, 6, c), np.float32))
    w = jax.nn.softmax(jnp.asarray(rng.standard_normal((n, len(PRIMITIVES)), np.float32)), -1)
    g = jnp.asarray(rng.standard_normal((n, 3, 6 // stride, 6 // stride, c), np.float32))

    def fast(x, p, w):
        return jnp.sum(jnp.stack(edge_group(x, p, w, stride, impl)) * g)

    def reference(x, p, w):
        ys = [
            mixed_op(x, {k: v[e] for k, v in p.items()}, w[e], stride, "depthwise")
            for e in range(n)
        ]
        return jnp.sum(jnp.stack(ys) * g)

    v1, g1 = jax.value_and_grad(fast, argnums=(0, 1, 2))(x, p, w)
    v2, g2 = jax.value_and_grad(reference, argnums=(0, 1, 2))(x, p, w)
    np.testing.assert_allclose(v1, v2, rtol=1e-4, atol=1e-4)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_search_cell_fast_path_equals_the_edge_by_edge_reference():
    rng = np.random.default_rng(2)
    cell = SearchCell(6, 6, 4, True, False, rng)
    s0 = jnp.asarray(rng.standard_normal((2, 8, 8, 6), np.float32))
    s1 = jnp.asarray(rng.standard_normal((2, 8, 8, 6), np.float32))
    w = jax.nn.softmax(jnp.asarray(rng.standard_normal((14, len(PRIMITIVES)), np.float32)), -1)
    out = cell(s0, s1, w)
    assert out.shape == (2, 4, 4, 16)
    np.testing.assert_allclose(out, cell(s0, s1, w, reference=True), atol=1e-4)


def test_supernet_softmax_rows_and_shapes():
    m = DartsSupernet(C=4, layers=3, num_classes=10, in_channels=1)
    normal, reduce = m.weights()
    assert normal.shape == reduce.shape == (14, 8)
    np.testing.assert_allclose(np.asarray(normal).sum(-1), 1.0, rtol=1e-6)
    assert m(jnp.zeros((2, 8, 8, 1))).shape == (2, 10)


def test_derivation_excludes_none_and_takes_top2_inputs():
    w = np.full((14, 8), 0.01)
    none = PRIMITIVES.index("none")
    # node 2 (edges 0, 1): both edges; edge 1 strongest
    w[0, PRIMITIVES.index("max_pool_3x3")] = 0.3
    w[1, PRIMITIVES.index("sep_conv_3x3")] = 0.5
    w[1, none] = 0.9  # `none` is ignored even where it dominates
    # node 3 (edges 2, 3, 4 from nodes 0, 1, 2): `none` dominates edge 2 but is excluded,
    # so node 3 reads nodes 2 and 1.
    w[2, none] = 0.95
    w[3, PRIMITIVES.index("dil_conv_3x3")] = 0.2
    w[4, PRIMITIVES.index("skip_connect")] = 0.4
    # node 5 (edges 9..13 from nodes 0..4): nodes 4 and 3
    w[12, PRIMITIVES.index("avg_pool_3x3")] = 0.6
    w[13, PRIMITIVES.index("sep_conv_5x5")] = 0.7
    cell = derive_cell(w)
    assert cell[0:2] == (("sep_conv_3x3", 1), ("max_pool_3x3", 0))
    assert cell[2:4] == (("skip_connect", 2), ("dil_conv_3x3", 1))
    assert cell[6:8] == (("sep_conv_5x5", 4), ("avg_pool_3x3", 3))
    assert all(op != "none" for op, _ in cell)
    assert len(EDGES) == 14 and EDGES[13] == (4, 5)


@pytest.mark.parametrize("order", [1, 2])
def test_search_compiles_once_and_moves_alphas(order, tmp_path):
    # One reduction cell (layers=1): the smallest network that still has every op.
    cfg = DartsSearchConfig(steps=3, order=order, C=4, layers=1, batch_size=16, log_every=1)
    r = darts_search("digits", cfg, out_dir=tmp_path)
    assert r.traces == 1
    assert [h["step"] for h in r.history] == [0, 1, 2, 3]
    before, after = np.asarray(r.history[0]["reduce"]), np.asarray(r.history[-1]["reduce"])
    assert np.abs(after - before).max() > 1e-6
    assert all(np.isfinite(h["train_loss"]) for h in r.history[1:])
    doc = json.loads((tmp_path / "alpha_history.json").read_text())
    assert doc["genotype"] == r.genotype.to_str() and doc["traces"] == 1
    assert DartsSpace().parse(doc["genotype"]) == r.genotype


@pytest.mark.slow
def test_cli_darts_search_export_inspect(tmp_path):
    out = tmp_path / "run"
    p = run_cli(
        "search", "--space", "darts", "--strategy", "darts", "--evaluator", "train",
        "--dataset", "digits", "--budget", "2", "--steps", "2", "--order", "1",
        "--out", str(out), "--no-progress", "--json", timeout=1500,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["n_trials"] == 1
    assert "supernet_val_accuracy" in res["best_metrics"]
    assert (out / "alpha_history.json").exists()
    exp = tmp_path / "export"
    p = run_cli(
        "export", "--storage", f"sqlite:///{out}/study.db", "--study", "run",
        "--trial", "best", "--out", str(exp),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    p = run_cli("inspect", "--space", "darts", "--arch", str(exp / "arch.json"), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["arch"] == res["best_arch"] and info["params"] > 0
