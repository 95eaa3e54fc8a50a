"""ONNX models made by other tools, read into the IR and predicted.

The three files under ``tests/data/onnx`` are torchvision's ResNet-18, MobileNetV3-Small
and ShuffleNetV2 x0.5 exported by ``torch.onnx.export`` (two by its torch.export-based
default exporter, one by the TorchScript-based one) with their weights stripped;
``tests/data/onnx/make_external.py`` made them in a separate environment with torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nas.errors import GraphError, NasError, UnknownOp
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data" / "onnx"
EXTERNAL = {
    # file: (parameters without BatchNorm (folded by the exporter), MACs, op counts)
    "torchvision_resnet18.onnx": (11_679_912, 1_814_073_344, {"conv": 20, "add": 8}),
    "torchvision_mobilenet_v3_small.onnx": (2_525_832, 56_510_400, {"hswish": 19, "mul": 9}),
    "torchvision_shufflenet_v2_x0_5.onnx": (1_362_816, 40_476_448, {"channel_shuffle": 16}),
}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "onnx-cache"))


@pytest.mark.parametrize("name", sorted(EXTERNAL))
def test_external_onnx_files_become_ir_graphs(name):
    from nas.onnx_import import onnx_to_graph

    params, macs, ops = EXTERNAL[name]
    g = onnx_to_graph(DATA / name)
    assert g.shape(g.input) == (224, 224, 3) and g.shape(g.output) == (1000,)
    assert g.params() == params and g.flops() == macs
    counts = g.op_counts()
    assert all(counts.get(op) == n for op, n in ops.items()), counts
    assert g.meta["source"] == "onnx" and g.meta["producer"] == "pytorch"


def test_own_exports_round_trip_through_onnx():
    from nas.search_spaces import get_space

    from nas.onnx_export import graph_to_onnx
    from nas.onnx_import import onnx_to_graph

    for name in ("nb201", "darts", "spos", "bignas"):
        space = get_space(name)
        g = space.to_graph(space.sample(np.random.default_rng(1)))
        h = onnx_to_graph(graph_to_onnx(g, fill="none", check=False))
        assert h.params() == g.params(), name
        assert abs(h.flops() - g.flops()) <= 10, name  # NB201 counts its head's bias


def _model(nodes, inits=(), out_shape=(1, 4, 8, 8)):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, list(out_shape))
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], [0.1] * 108)
    return helper.make_model(helper.make_graph(nodes, "t", [x], [y], [w, *inits]))


def test_unrepresentable_operators_are_named():
    from onnx import helper

    from nas.onnx_import import onnx_to_graph

    conv = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv")
    bad = {
        "LeakyRelu": helper.make_node("LeakyRelu", ["c"], ["y"], name="leaky"),
        "Sin": helper.make_node("Sin", ["c"], ["y"], name="sine"),
    }
    for op, node in bad.items():
        with pytest.raises(UnknownOp, match=f"{op}.*no IR equivalent"):
            onnx_to_graph(_model([conv, node]))
    ok = onnx_to_graph(_model([conv, helper.make_node("Relu", ["c"], ["y"])]))
    assert ok.op_counts()["conv"] == 1
    with pytest.raises(NasError, match="not an ONNX model"):
        from nas.onnx_import import load_onnx

        load_onnx(Path(__file__))  # a Python file
    relus = [helper.make_node("Relu", [i], [i + "r"]) for i in ("x", "x2")]
    add = helper.make_node("Add", ["xr", "x2r"], ["y"])
    two_inputs = _model([*relus, add], out_shape=(1, 3, 8, 8))
    from onnx import TensorProto

    two_inputs.graph.input.append(
        helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 3, 8, 8])
    )
    with pytest.raises(GraphError, match="2 data inputs"):
        onnx_to_graph(two_inputs)


def test_predict_external_onnx_files(tmp_path):
    from nas.predictors import get_predictor

    from nas import api
    from nas.onnx_import import onnx_to_graph

    graphs = [onnx_to_graph(DATA / name) for name in sorted(EXTERNAL)]
    flops = get_predictor("flops").fit(graphs)
    for name in sorted(EXTERNAL):
        out = api.predict(flops, onnx=DATA / name)
        assert out["basis"] == "proxy" and out["flops"] == EXTERNAL[name][1]
        assert abs(out["mean"] / EXTERNAL[name][1] - 1) < 1e-5  # float32-rounded in features
    # The command line, with a saved proxy (cheap: no network to compile) ...
    flops.save(tmp_path / "flops")
    onnx = str(DATA / "torchvision_mobilenet_v3_small.onnx")
    r = run_cli("predict", "--predictor", str(tmp_path / "flops"), "--onnx", onnx, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["basis"] == "proxy" and doc["params"] == EXTERNAL[Path(onnx).name][0]
    # ... and a learned predictor with a prior: an ONNX file of no known space gets the prior.
    from nas.predictors import get_predictor as pretrained

    out = api.predict(pretrained("pretrained:gennape"), onnx=onnx)
    assert out["basis"] == "prior+learned" and out["learned_share"] == 0.0
    assert np.isfinite(out["mean"]) and out["std"] >= 0
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not onnx")
    for args in (("--onnx", str(bad)), ("--onnx", str(bad), "--arch", "x")):
        r = run_cli("predict", "--predictor", str(tmp_path / "flops"), *args)
        assert r.returncode == 2 and r.stderr.startswith("nas: error:"), r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
