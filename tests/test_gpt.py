"""The gpt space and its supernet: nested children equal to the supernet, one compiled
training step for every child, save/restore, the corpus, and the CLI end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nas.search_spaces.gpt.space import GPTSpace
from nas.search_spaces.gpt.supernet import GPTSupernet
from nas.search_spaces.gpt.train import ChildScorer, SupernetConfig, SupernetTrainer

from nas.corpus import load_stdlib, load_text
from nas.errors import DataError, InvalidGenotype
from tests.conftest import run_cli
from tests.graphs import jit_forward


def tiny_space() -> GPTSpace:
    return GPTSpace(
        d_models=(16, 32), max_layers=3, heads=(1, 2), head_dim=8, ffns=(32, 64), context=32
    )


def perturbed(space: GPTSpace, seed: int = 0) -> GPTSupernet:
    """A supernet with non-trivial biases and norms (so equality tests mean something)."""
    sn = GPTSupernet(space, seed=seed)
    rng = np.random.default_rng(seed)
    for name, var in nnx.state(sn, nnx.Param).items():
        if "bias" in name or name.startswith("b"):
            getattr(sn, name)[...] = jnp.asarray(rng.normal(0, 0.2, var[...].shape), jnp.float32)
        elif "scale" in name:
            getattr(sn, name)[...] = jnp.asarray(rng.uniform(0.5, 1.5, var[...].shape), jnp.float32)
    return sn


def test_stdlib_corpus_is_split_by_module_and_deterministic():
    a, b = load_stdlib(), load_stdlib()
    assert a.fingerprint == b.fingerprint and np.array_equal(a.val, b.val)
    share = a.val.size / (a.train.size + a.val.size)
    assert 0.05 < share < 0.3 and a.files[0] > 100 and a.files[1] > 5
    assert bytes(a.train[:4096]).isascii() or b"def " in bytes(a.train[:100000])


def test_text_corpus_reads_your_files(tmp_path):
    for i in range(12):
        (tmp_path / f"f{i}.txt").write_text(f"line {i} " * 300)
    (tmp_path / "blob.bin").write_bytes(b"\0\1\2" * 100)
    c = load_text(tmp_path)
    assert c.files[0] + c.files[1] == 12 and c.val.size > 0
    with pytest.raises(DataError, match="does not exist"):
        load_text(tmp_path / "missing")
    with pytest.raises(DataError, match="--data-dir"):
        load_text(None)


def test_space_notation_and_nesting_rules():
    s = tiny_space()
    g = s.parse("d32:h2,1:f64,32")
    assert s.contains(g) and g.depth == 2
    assert not s.contains(s.parse("d48:h2:f64"))
    with pytest.raises(InvalidGenotype, match="one of each per layer"):
        s.parse("d32:h2,1:f64")
    rng = np.random.default_rng(0)
    for _ in range(20):  # mutation always changes the network
        assert s.mutate(g, rng) != g


def test_children_equal_the_supernet_with_one_compile():
    s = tiny_space()
    sn = perturbed(s)
    graphdef, state = nnx.split(sn)
    traces = []

    def forward(st, x, arch):
        traces.append(1)
        return nnx.merge(graphdef, st)(x, arch)

    fn = jax.jit(forward)
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32)), jnp.int32)
    rng = np.random.default_rng(1)
    for g in [s.known()["max"], s.known()["min"], s.sample(rng), s.sample(rng)]:
        ref = np.asarray(fn(state, x, sn.encode(g)))
        child = sn.extract(g)
        assert child.graph().params() == s.to_graph(g).params()
        out = np.asarray(jit_forward(child)(x))
        np.testing.assert_allclose(out, ref, atol=2e-5)
    assert len(traces) == 1


@pytest.mark.slow
def test_sandwich_training_compiles_once_learns_and_restores(tmp_path):
    s = tiny_space()
    corpus = load_stdlib()
    cfg = SupernetConfig(
        steps=6, batch_size=4, warmup=2, lr=1e-2, eval_bytes=2048, dense_fraction=0.34
    )
    sn = GPTSupernet(s, seed=0)
    before = ChildScorer(sn, corpus, cfg)(s.known()["max"])
    trainer = SupernetTrainer(sn, cfg)
    summary = trainer.fit(corpus)
    # one program for the 2 dense warm-up steps, one for the 4 sandwich steps' 12 children
    assert trainer.traces == 2 and summary["steps"] == 6
    scorer = ChildScorer(sn, corpus, cfg)
    after = {name: scorer(g) for name, g in s.known().items()}
    assert after["max"] < before  # it learned
    path = sn.save(tmp_path / "sn.safetensors")
    again = GPTSupernet(s, seed=5).load(path)
    assert ChildScorer(again, corpus, cfg)(s.known()["min"]) == pytest.approx(
        after["min"], abs=1e-6
    )
    with pytest.raises(DataError, match="another gpt space"):
        GPTSupernet(GPTSpace(), seed=0).load(path)


def test_cli_search_pareto_front_and_exported_child_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    out = run_cli(
        "search",
        "--space",
        "gpt",
        "--evaluator",
        "supernet",
        "--strategy",
        "nsga2",
        "--objectives",
        "bits_per_byte,params",  # bits per byte is minimised: the evaluator declares it
        "--budget",
        "3",
        "--steps",
        "3",
        "--set",
        "evaluator_options.batch_size=4",
        "--set",
        "evaluator_options.eval_bytes=4096",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["n_failed"] == 0 and doc["pareto"]
    assert [o["direction"] for o in doc["objectives"]] == ["minimize", "minimize"]
    assert all(0 < t["metrics"]["bits_per_byte"] < 9 for t in doc["top"])
    best = min(doc["pareto"], key=lambda t: t["values"]["bits_per_byte"])
    assert doc["best_trial"] == best["trial"]
    trial = best["trial"]
    exp = run_cli(
        "export",
        "--storage",
        doc["storage"],
        "--study",
        doc["study"],
        "--trial",
        "best",
        "--format",
        "onnx",
        "--out",
        str(tmp_path / "exp"),
    )
    assert exp.returncode == 0, exp.stderr[-2000:]
    from nas.graph import ArchGraph
    from nas.weights import model_from_weights

    arch = json.loads((tmp_path / "exp" / "arch.json").read_text())
    assert arch["onnx"]["trained"]
    graph = ArchGraph.from_json(arch["graph"])
    model = model_from_weights(
        graph, tmp_path / "run" / "trials" / str(trial) / "weights.safetensors", 0
    )
    x = np.random.default_rng(0).integers(0, 256, (2, 128)).astype(np.int32)
    ref = np.asarray(jit_forward(model)(jnp.asarray(x)))
    sess = ort.InferenceSession(
        str(tmp_path / "exp" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], ref, atol=1e-4)


def test_sorting_by_importance_keeps_the_dense_function_and_nests_children():
    from nas.search_spaces.gpt.compress import importance, largest, sort_by_importance

    s = tiny_space()
    sn = perturbed(s, seed=1)
    graphdef, state = nnx.split(sn)
    fwd = jax.jit(lambda st, x, arch: nnx.merge(graphdef, st)(x, arch))
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 32)), jnp.int32)
    dense = np.asarray(fwd(state, x, largest(sn)))
    imp = importance(sn, load_stdlib(), batches=2, batch_size=4)
    sort_by_importance(sn, imp)
    graphdef_after, state = nnx.split(sn)
    assert graphdef_after == graphdef  # sorting changes state only: no recompilation
    np.testing.assert_allclose(np.asarray(fwd(state, x, largest(sn))), dense, atol=2e-5)
    assert sorted(np.asarray(sn.layer_rank[...]).tolist()) == [0, 1, 2]
    g = s.parse("d16:h1:f32")  # a one-layer child keeps the most important layer
    assert sn.layers_of(g) == [int(np.argmax(imp.layers))]
    child = np.asarray(jit_forward(sn.extract(g))(x))
    np.testing.assert_allclose(child, np.asarray(fwd(state, x, sn.encode(g))), atol=2e-5)


def test_latency_table_prices_children_by_their_parts(tmp_path):
    from nas.search_spaces.gpt.evaluator import GPTSupernetEvaluator
    from nas.search_spaces.gpt.latency import GPTLatencyTable, block_key, ends_key

    from nas.errors import ConfigError

    s = GPTSpace()
    entries = {ends_key(s, d): d / 100 for d in s.d_models}
    for d in s.d_models:
        for h in s.head_counts:
            for f in s.ffns:
                entries[block_key(s, d, h, f)] = h + f / 1000
    path = GPTLatencyTable(entries, "by hand").save(tmp_path / "lat.json")
    ev = GPTSupernetEvaluator(s, "stdlib", options={"latency_table": str(path)})
    g = s.parse("d48:h2,3:f64,256")
    assert ev.cost(g)["latency"] == pytest.approx(0.48 + 2.064 + 3.256)
    assert ev.cost(g)["params"] == s.to_graph(g).params()
    with pytest.raises(ConfigError, match="no entry"):
        GPTLatencyTable({}, "empty").predict_genotype(s, g)


@pytest.mark.slow
def test_latency_table_is_measured_for_every_part(tmp_path):
    from nas.search_spaces.gpt.latency import load_table, measure_table

    s = tiny_space()
    table = measure_table(s, repeats=3)
    assert len(table.entries) == 2 + 2 * 2 * 2 and min(table.entries.values()) > 0
    again = load_table(table.save(tmp_path / "t.json"))
    assert again.predict_genotype(s, s.known()["max"]) > 0
