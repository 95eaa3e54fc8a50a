"""The transformer space: published models count exactly, MiniLM runs as its authors' code."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nas.search_spaces import get_space
from nas.search_spaces.transformer.genotypes import PUBLISHED

from nas.errors import InvalidGenotype
from tests.conftest import run_cli


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_models_count_exactly(name):
    space = get_space("transformer")
    graph = space.to_graph(space.resolve(name))
    assert graph.params() == PUBLISHED[name].params


def test_macs_follow_the_stated_convention_and_scale_with_length():
    """GPT-2 at T tokens: 12 layers x (12 d^2 T + 2 T^2 d) + the tied head's T d V."""
    space = get_space("transformer")
    d, v, layers = 768, 50257, 12
    for t in (128, 1024):
        g = space.to_graph(space.parse(f"gpt2,seq={t}"))
        assert g.flops() == layers * (12 * d * d * t + 2 * t * t * d) + t * d * v
        assert g.shape(g.output) == (t, v)
    vit = space.to_graph(space.resolve("vit-b16"))
    patches, tokens = 196 * 768 * 16 * 16 * 3, 197
    per_layer = 12 * 768 * 768 * tokens + 2 * tokens * tokens * 768
    assert vit.flops() == patches + layers * per_layer + 768 * 1000


def test_cli_inspect_and_errors(tmp_path):
    out = run_cli("inspect", "--space", "transformer", "--arch", "minilm-l6", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["params"] == 22_713_216 and doc["op_counts"]["attention"] == 6
    bad = run_cli("inspect", "--space", "transformer", "--arch", "gpt2,heads=7")
    assert bad.returncode == 2 and bad.stderr.startswith("nas: error: transformer: d_model")
    with pytest.raises(InvalidGenotype, match="unknown model"):
        get_space("transformer").parse("gpt5")
    with pytest.raises(InvalidGenotype, match="exceeds"):
        get_space("transformer").parse("gpt2,seq=2048")


def test_minilm_graph_with_its_weights_equals_the_encoder():
    """The IR-built all-MiniLM-L6-v2, loaded with the shipped weights, gives the
    sentence embeddings of the project's reference BERT forward (mean pooled, L2 normed)."""
    encoder = pytest.importorskip("nas.predictors.onnxnet.encoder")
    if not encoder.available():
        pytest.skip("all-MiniLM-L6-v2 weights not installed")
    import jax.numpy as jnp
    from flax import nnx
    from nas.search_spaces.transformer.weights import bert_weights
    from safetensors.numpy import load_file

    from nas.model import GraphModel
    from tests.graphs import jit_forward

    tensors = load_file(str(encoder.model_dir() / "model.safetensors"))
    floats = sum(v.size for v in tensors.values() if v.dtype == np.float32)
    space = get_space("transformer")
    full = space.to_graph(space.resolve("minilm-l6"))
    assert full.params() == floats  # every float of the file, nothing else
    graph = space.to_graph(space.parse("minilm-l6,seq=16,pooler=false"))
    model = GraphModel(graph, rngs=nnx.Rngs(0), weights=bert_weights(graph, tensors))
    ids = np.random.default_rng(0).integers(1000, 30000, (3, 16)).astype(np.int32)
    hidden = np.asarray(jit_forward(model)(jnp.asarray(ids)))
    pooled = hidden.mean(axis=1)
    ours = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    params = {k: jnp.asarray(v) for k, v in tensors.items() if v.dtype == np.float32}
    ref = np.asarray(encoder.bert_forward(params, jnp.asarray(ids), jnp.ones_like(ids)))
    np.testing.assert_allclose(ours, ref, atol=2e-5)


@pytest.mark.parametrize("arch", ["gpt2,seq=32,layers=2", "minilm-l6,seq=16", "vit-b16,layers=2"])
def test_onnx_text_and_graph_features_read_transformers(arch):
    """The ONNX text writes attention as one line and counts what the IR counts; the
    graph features have attention, embedding and norm categories."""
    pytest.importorskip("onnx")
    from nas.predictors.features import CATEGORIES, graph_features
    from nas.predictors.onnxnet.text import _parse, describe

    from nas.onnx_export import graph_to_onnx

    space = get_space("transformer")
    graph = space.to_graph(space.parse(arch))
    nodes, _, _ = _parse(graph_to_onnx(graph, fill="none", check=False))
    assert sum(n.params for n in nodes) == graph.params()
    assert sum(n.macs for n in nodes) == graph.flops()
    text = " ".join(c.text for c in describe(graph))
    assert "Attention h12 d" in text and ("causal" in text) == arch.startswith("gpt2")
    feats = graph_features(graph)
    cats = {CATEGORIES[int(np.argmax(r[: len(CATEGORIES)]))] for r in feats.nodes}
    assert {"attention", "dense", "embed"} <= cats
