"""The standalone flax source export: same function as the IR-built model, trains when run."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
from flax import nnx
from nas.search_spaces import get_space

from nas.codegen import graph_to_python
from nas.ops import OPS
from tests.graphs import (
    image_tokens_graph,
    jit_forward,
    random_model,
    sample_input,
    token_ops_graph,
)
from tests.test_graph import small_cnn


def load_generated(source: str, path):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("generated_net", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_parity(graph, tmp_path, shape):
    mod = load_generated(graph_to_python(graph), tmp_path / "net.py")
    assert "nas" not in {
        line.split()[1].split(".")[0]
        for line in (tmp_path / "net.py").read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    net = nnx.eval_shape(lambda: mod.Network(nnx.Rngs(0)))
    model = random_model(graph, seed=3)
    for n in graph.g:
        if OPS[graph.op(n)].parametric:
            nnx.update(getattr(net, f"l{n}"), nnx.state(model.layers[str(n)]))
    net.eval()
    model.eval()
    x = jnp.asarray(sample_input(graph, shape))
    np.testing.assert_allclose(
        np.asarray(jit_forward(net)(x)), np.asarray(jit_forward(model)(x)), rtol=1e-5, atol=1e-5
    )


def test_generated_source_equals_the_ir_model(tmp_path):
    check_parity(small_cnn(), tmp_path, (2, 8, 8, 3))
    s = get_space("nb201")
    g = s.to_graph(
        s.parse(
            "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
        ),
        "digits",
    )
    check_parity(g, tmp_path, (2, 8, 8, 1))


def test_generated_source_of_sequence_models_equals_the_ir_model(tmp_path):
    check_parity(token_ops_graph(), tmp_path, (2, 6))
    check_parity(image_tokens_graph(), tmp_path, (2, 8, 8, 3))


def test_generated_source_trains_when_run(tmp_path):
    s = get_space("nb201")
    g = s.to_graph(s.resolve("resnet"), "digits")
    (tmp_path / "model.py").write_text(graph_to_python(g))
    out = subprocess.run(
        [sys.executable, "model.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    first, last = (float(v) for v in out.stdout.split()[1:4:2])
    assert last < first
