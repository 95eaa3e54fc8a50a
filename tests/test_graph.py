"""The architecture graph: validation, shapes, counting, JSON schema, canonical hash, builder."""

from __future__ import annotations

import json
import random

import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from nas.errors import GraphError, UnknownOp
from nas.graph import OPS, ArchGraph, CostConvention
from nas.model import build_model, count_model_params
from tests.graphs import every_op_graphs, jit_forward, random_model, sample_input


def small_cnn() -> ArchGraph:
    g = ArchGraph(convention=CostConvention(dense_bias=True))
    x = g.add("input", shape=[8, 8, 3])
    a = g.add("conv", [x], out_channels=4, kernel=3, padding=1)  # 8*8*27*4 MACs, 108 params
    a = g.add("batch_norm", [a])  # 8 params
    a = g.add("relu", [a])
    b = g.add("conv", [x], out_channels=4, kernel=1, bias=True)  # 8*8*3*4 MACs, 16 params
    s = g.add("add", [a, b])
    d = g.add("conv", [s], out_channels=4, kernel=3, padding=1, groups=4)  # depthwise: 36 params
    c = g.add("concat", [s, d])  # 8 channels
    p = g.add("global_pool", [c])
    y = g.add("dense", [p], out_features=5)  # 45 params, 40 + 5 MACs
    g.add("output", [y])
    return g.finalize()


def test_shapes_and_counts_by_hand():
    g = small_cnn()
    assert g.shape(g.output) == (5,)
    assert g.params() == 108 + 8 + 16 + 36 + 45
    # conv bias is not counted by this convention; the dense bias is.
    assert g.flops() == 8 * 8 * 27 * 4 + 8 * 8 * 3 * 4 + 8 * 8 * 9 * 4 + 40 + 5
    g.convention = CostConvention(conv_bias=True, dense_bias=False)
    assert g.flops() == 8 * 8 * 27 * 4 + 8 * 8 * 3 * 4 + 8 * 8 * 4 + 8 * 8 * 9 * 4 + 40


def test_strided_conv_and_pool_shapes():
    g = ArchGraph.sequential(
        (32, 32, 3),
        [
            ("conv", {"out_channels": 8, "kernel": 3, "stride": 2, "padding": 1}),
            ("max_pool", {"kernel": 3, "stride": 2, "padding": 1}),
            ("avg_pool", {"kernel": 2, "stride": 2}),
            ("pad", {"top": 1, "left": 1}),
            ("crop", {"bottom": 1, "right": 1}),
        ],
    )
    assert g.shape(g.output) == (4, 4, 8)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda g, x: g.add("conv", [x], kernel=3), "missing attribute"),
        (
            lambda g, x: g.add("conv", [x], out_channels=4, kernel=3, colour="red"),
            "unknown attribute",
        ),
        (lambda g, x: g.add("conv", [x], out_channels=5, kernel=1, groups=2), "groups=2"),
        (lambda g, x: g.add("conv", [x], out_channels=4, kernel=9), "leaves no output"),
        (lambda g, x: g.add("dense", [g.add("relu", [x])], out_features=0), "out_features"),
        (lambda g, x: g.add("split", [x], start=2, size=5), "outside 3 channels"),
    ],
)
def test_validation_names_the_problem(build, message):
    g = ArchGraph()
    x = g.add("input", shape=[8, 8, 3])
    y = build(g, x)
    g.add("output", [y])
    with pytest.raises(GraphError, match=message):
        g.finalize()


def test_structural_errors():
    g = ArchGraph()
    x = g.add("input", shape=[4, 4, 2])
    a = g.add("relu", [x])
    b = g.add("conv", [x], out_channels=3, kernel=1)
    s = g.add("add", [a, b])
    g.add("output", [s])
    with pytest.raises(GraphError, match=r"equal shapes"):
        g.finalize()
    with pytest.raises(UnknownOp, match="unknown op 'softmax2'"):
        g.add("softmax2", [x])
    with pytest.raises(GraphError, match="used twice"):
        g.add("add", [x, x])
    g2 = ArchGraph()
    x = g2.add("input", shape=[4])
    y = g2.add("relu", [x])
    g2.add("relu", [y])  # dangling
    g2.add("output", [y])
    with pytest.raises(GraphError, match="dead end"):
        g2.finalize()
    g3 = ArchGraph()
    x = g3.add("input", shape=[4])
    y = g3.add("relu", [x])
    z = g3.add("relu", [y])
    g3.add("output", [z])
    g3.g.add_edge(z, y, index=1)
    with pytest.raises(GraphError, match="cycle"):
        g3.finalize()


def test_json_round_trip_is_lossless():
    g = small_cnn()
    g.meta["space"] = "toy"
    data = g.to_json()
    assert data["schema"] == "nas.archgraph" and data["version"] == 1
    back = ArchGraph.loads(json.dumps(data))
    assert back.to_json() == data
    assert back.canonical_hash() == g.canonical_hash()
    assert (back.params(), back.flops()) == (g.params(), g.flops())


def test_json_rejects_other_versions_and_tampering():
    data = small_cnn().to_json()
    with pytest.raises(GraphError, match="version 2"):
        ArchGraph.from_json({**data, "version": 2})
    data["nodes"][1]["shape"] = [1, 1, 1]
    with pytest.raises(GraphError, match="disagrees"):
        ArchGraph.from_json(data)
    with pytest.raises(GraphError, match="not valid JSON"):
        ArchGraph.loads("{")


def relabelled(g: ArchGraph, seed: int) -> ArchGraph:
    """The same graph with node ids shuffled and nodes inserted in another order."""
    rnd = random.Random(seed)
    ids = list(g.g.nodes)
    perm = dict(zip(ids, rnd.sample(range(1000, 1000 + len(ids)), len(ids)), strict=True))
    new = ArchGraph(convention=g.convention)
    order = list(g.g.nodes)
    rnd.shuffle(order)
    for n in order:
        d = g.g.nodes[n]
        new.g.add_node(perm[n], op=d["op"], attrs=dict(d["attrs"]), scope="")
    for u, v, d in g.g.edges(data=True):
        new.g.add_edge(perm[u], perm[v], index=d["index"])
    return new.finalize()


def test_hash_is_isomorphism_invariant():
    g = small_cnn()
    for seed in range(3):
        assert relabelled(g, seed).canonical_hash() == g.canonical_hash()


def test_hash_tells_computations_apart():
    base = small_cnn().canonical_hash()

    def variant(**change):
        g = small_cnn()
        node = next(n for n in g.g if g.op(n) == "conv")
        g.g.nodes[node]["attrs"].update(change)
        return g.finalize().canonical_hash()

    assert variant(kernel=1, padding=0) != base
    assert variant(out_channels=4, bias=True) != base
    # concat order matters; add order does not.
    g = small_cnn()
    cat = next(n for n in g.g if g.op(n) == "concat")
    for _u, _, d in g.g.in_edges(cat, data=True):
        d["index"] = 1 - d["index"]
    assert g.finalize().canonical_hash() != base
    g = small_cnn()
    add = next(n for n in g.g if g.op(n) == "add")
    for _u, _, d in g.g.in_edges(add, data=True):
        d["index"] = 1 - d["index"]
    assert g.finalize().canonical_hash() == base


def test_hash_sees_through_zero_identity_and_dead_branches():
    def net(extra: str) -> ArchGraph:
        g = ArchGraph()
        x = g.add("input", shape=[4, 4, 2])
        c = g.add("conv", [x], out_channels=2, kernel=1)
        terms = [c]
        if extra == "zero":
            terms.append(g.add("zero", [x]))
        if extra == "zero_conv":  # a conv (no bias) of a zero branch is still zero
            z = g.add("zero", [x])
            terms.append(g.add("conv", [z], out_channels=2, kernel=3, padding=1))
        s = g.add("add", terms)
        if extra == "identity":
            s = g.add("identity", [s])
        g.add("output", [s])
        return g.finalize()

    plain = net("").canonical_hash()
    assert net("zero").canonical_hash() == plain
    assert net("zero_conv").canonical_hash() == plain
    assert net("identity").canonical_hash() == plain


def test_shared_versus_separate_parameters_differ():
    def net(shared: bool) -> ArchGraph:
        g = ArchGraph()
        x = g.add("input", shape=[4, 4, 2])
        a = g.add("conv", [x], out_channels=2, kernel=1)
        b = g.add("identity", [a]) if shared else g.add("conv", [x], out_channels=2, kernel=1)
        g.add("output", [g.add("add", [a, b])])
        return g.finalize()

    assert net(True).canonical_hash() != net(False).canonical_hash()


def test_every_op_builds_and_runs():
    graphs = every_op_graphs()
    used = {g.op(n) for g, _ in graphs for n in g.g}
    assert set(OPS) - used == set(), "test must cover the whole vocabulary"
    for g, shape in graphs:
        model = random_model(g)
        model.eval()
        out = jit_forward(model)(jnp.asarray(sample_input(g, shape)))
        assert out.shape == (shape[0], *g.shape(g.output)) and bool(jnp.all(jnp.isfinite(out)))
        assert count_model_params(model) == g.params()


def test_builder_ops_match_reference_semantics():
    x = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    g = ArchGraph.sequential((4, 4, 4), [("channel_shuffle", {"groups": 2})])
    y = np.asarray(build_model(g)(jnp.asarray(x)))
    # PyTorch NCHW view(B, 2, 2, H, W).transpose(1, 2): channel order 0, 2, 1, 3.
    np.testing.assert_array_equal(y, x[..., [0, 2, 1, 3]])
    g = ArchGraph.sequential(
        (4, 4, 4), [("avg_pool", {"kernel": 3, "padding": 1, "count_include_pad": False})]
    )
    y = np.asarray(build_model(g)(jnp.asarray(x)))
    np.testing.assert_allclose(y[0, 0, 0], x[0, :2, :2].mean(axis=(0, 1)), rtol=1e-6)


def test_topological_order_is_deterministic():
    g = small_cnn()
    assert g.topological() == list(nx.lexicographical_topological_sort(g.g))


def test_model_built_from_given_weights_computes_like_the_original():
    """``GraphModel(weights=...)`` takes every variable from the mapping: a model rebuilt
    from another's weights computes the same; a missing or misshapen weight names its node."""
    from flax import nnx

    from nas.model import GraphModel

    g = ArchGraph()
    y = g.add("input", shape=[8, 8, 4])
    y = g.add("conv", [y], out_channels=8, kernel=3, padding=1, bias=True)
    y = g.add("relu", [g.add("batch_norm", [y])])
    y = g.add("conv", [y], out_channels=8, kernel=3, padding=1, groups=8)
    y = g.add("flatten", [g.add("global_pool", [g.add("batch_norm", [y], affine=False)])])
    g.add("output", [g.add("dense", [y], out_features=5)])
    g.finalize()
    ref = build_model(g, seed=3)
    weights: dict[int, dict[str, np.ndarray]] = {}
    for n, layer in ref.layers.items():
        for name in ("kernel", "bias", "scale", "mean", "var"):
            var = getattr(layer, name, None)
            if isinstance(var, nnx.Variable):
                weights.setdefault(int(n), {})[name] = np.asarray(var[...])
    # non-trivial statistics, so evaluation mode depends on them
    bn = next(n for n in weights if "mean" in weights[n])
    weights[bn]["mean"] = weights[bn]["mean"] + 0.5
    ref.layers[str(bn)].mean[...] = jnp.asarray(weights[bn]["mean"])
    model = GraphModel(g, rngs=nnx.Rngs(params=0, dropout=1), weights=weights)
    ref.eval()
    model.eval()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 4)), jnp.float32)
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(ref(x)), rtol=1e-6, atol=1e-6)
    other = build_model(g, seed=4)
    other.eval()
    assert not np.allclose(np.asarray(other(x)), np.asarray(ref(x)), atol=1e-4)

    conv = next(n for n in weights if "kernel" in weights[n])
    bad = {n: dict(v) for n, v in weights.items()}
    bad[conv]["kernel"] = bad[conv]["kernel"][..., :1]
    with pytest.raises(GraphError, match=f"node {conv} .*kernel"):
        GraphModel(g, rngs=nnx.Rngs(0), weights=bad)
    del bad[conv]
    with pytest.raises(GraphError, match=f"node {conv} .*no weight 'kernel'"):
        GraphModel(g, rngs=nnx.Rngs(0), weights=bad)
