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
from tests.graphs import (  # noqa: E402
    every_op_graph,
    every_op_graphs,
    jit_forward,
    random_model,
    sample_input,
)


def _parity(graph: ArchGraph, batch: int = 2) -> float:
    model = random_model(graph)
    model.eval()
    x = sample_input(graph, (batch, *graph.shape(graph.input)))
    ref = np.asarray(jit_forward(model)(jnp.asarray(x)))
    proto = graph_to_onnx(graph, model)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x})[0]
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
    return float(np.abs(out - ref).max())


def test_every_op_matches_the_flax_model():
    graphs = [g for g, _ in every_op_graphs()]
    assert set(OPS) - {g.op(n) for g in graphs for n in g.g} == set(), "cover the vocabulary"
    for g in graphs:
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
    from nas.search_spaces import get_space

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
    from nas.search_spaces import get_space

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
