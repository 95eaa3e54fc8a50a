"""The IR as ONNX: every op, checker-valid, and the same outputs as the flax model."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from nas.errors import ConfigError, GraphError
from nas.graph import OPS, ArchGraph
from nas.model import build_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from nas.onnx_export import graph_to_onnx, save_onnx  # noqa: E402


def every_op_graph() -> ArchGraph:
    g = ArchGraph()
    x = g.add("input", shape=[8, 8, 4])
    y = g.add("conv", [x], out_channels=8, kernel=3, padding=1, dilation=1, bias=True)
    y = g.add("batch_norm", [y], affine=False)
    acts = [
        g.add(a, [y])
        for a in ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "tanh", "gelu")
    ]
    y = g.add("add", acts)
    y = g.add("channel_shuffle", [y], groups=2)
    lo = g.add("split", [y], start=0, size=4)
    hi = g.add("split", [y], start=4, size=4)
    se = g.add("global_pool", [hi], keepdims=True)
    se = g.add("conv", [se], out_channels=4, kernel=1, bias=True)
    hi = g.add("mul", [hi, se])
    y = g.add("concat", [lo, hi])
    y = g.add("batch_norm", [y])
    y = g.add("max_pool", [y], kernel=3, stride=2, padding=1)
    y = g.add("avg_pool", [y], kernel=3, stride=1, padding=1, count_include_pad=False)
    y = g.add("conv", [y], out_channels=8, kernel=3, padding=[0, 2, 1, 1], dilation=2, groups=4)
    z = g.add("zero", [y], stride=2, out_channels=8)
    y = g.add("conv", [y], out_channels=8, kernel=1, stride=2)
    y = g.add("add", [y, z])
    y = g.add("pad", [y], top=1, left=1)
    y = g.add("crop", [y], bottom=1, right=1)
    y = g.add("avg_pool", [y], kernel=2, stride=1, padding=1)
    y = g.add("dense", [y], out_features=6)  # a dense layer over a map's channels
    y = g.add("global_pool", [y], mode="max", keepdims=True)
    y = g.add("dropout", [g.add("flatten", [g.add("identity", [y])])], rate=0.1)
    y = g.add("dense", [y], out_features=5)
    g.add("output", [g.add("add", [y, g.add("zero", [y])])])
    return g.finalize()


def _randomise(model, seed: int = 1) -> None:
    """Non-trivial biases and BatchNorm statistics, so that parity tests mean something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers.values():
        for name in ("bias", "scale", "mean", "var"):
            v = getattr(layer, name, None)
            if v is None or not hasattr(v, "shape"):
                continue
            lo_hi = (0.5, 1.5) if name in ("scale", "var") else (-0.5, 0.5)
            v[...] = jnp.asarray(rng.uniform(*lo_hi, v.shape), jnp.float32)


def _parity(graph: ArchGraph, batch: int = 2) -> float:
    model = build_model(graph, seed=0)
    _randomise(model)
    model.eval()
    x = np.random.default_rng(0).normal(size=(batch, *graph.shape(graph.input)))
    x = x.astype(np.float32)
    ref = np.asarray(model(jnp.asarray(x)))
    proto = graph_to_onnx(graph, model)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x})[0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    return float(np.abs(out - ref).max())


def test_every_op_matches_the_flax_model():
    g = every_op_graph()
    assert set(OPS) - {g.op(n) for n in g.g} == set(), "test must cover the whole vocabulary"
    worst = _parity(g, batch=3)  # asserts allclose inside
    assert np.isfinite(worst) and worst < 1e-2


@pytest.mark.parametrize(
    "space,arch",
    [
        (
            "nb201",
            "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
        ),
        ("spos", None),
        ("darts", None),
        ("ofa", None),
    ],
)
def test_space_networks_match_in_onnxruntime(space, arch):
    from search_spaces import get_space

    sp = get_space(space)
    geno = sp.parse(arch) if arch else sp.sample(np.random.default_rng(3))
    worst = _parity(sp.to_graph(geno, "digits"))  # asserts allclose inside
    assert np.isfinite(worst) and worst < 1e-2


def test_structure_only_exports_are_valid(tmp_path):
    g = every_op_graph()
    for fill in ("zeros", "random", "none"):
        proto = graph_to_onnx(g, fill=fill)  # check_model runs inside
        names = {i.name for i in proto.graph.input}
        assert ("0.weight" in names or "1.weight" in names) == (fill == "none")
    proto = graph_to_onnx(g, fill="none")
    # Every ONNX node names the IR node (and its scope) it comes from.
    assert all(":" in n.name for n in proto.graph.node)
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "BatchNormalization", "Clip", "HardSigmoid", "HardSwish", "Gelu"} <= ops
    assert {"Sum", "Concat", "Slice", "Pad", "Reshape", "AveragePool", "MaxPool"} <= ops
    path = save_onnx(g, tmp_path / "m.onnx", fill="zeros")
    onnx.checker.check_model(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.ones((1, 8, 8, 4), np.float32)})[0].shape == (1, 5)


def test_scope_travels_in_node_names():
    from search_spaces import get_space

    sp = get_space("nb201")
    g = sp.to_graph(sp.sample(np.random.default_rng(0)), "digits")
    names = [n.name for n in graph_to_onnx(g, fill="none").graph.node]
    assert any(name.startswith("stage0/cell0/") for name in names)


def test_errors_are_typed():
    g = every_op_graph()
    with pytest.raises(ConfigError, match="fill"):
        graph_to_onnx(g, fill="ones")
    with pytest.raises(ConfigError, match="opset"):
        graph_to_onnx(g, opset=13)
    other = ArchGraph.sequential((8, 8, 4), [("conv", {"out_channels": 2, "kernel": 1})])
    with pytest.raises(GraphError, match="another graph"):
        graph_to_onnx(g, build_model(other))
