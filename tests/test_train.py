"""Train-from-scratch evaluator on the built-in digits data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from nas.search_spaces import get_space

from nas.data import load_digits
from nas.errors import DataError, UnknownName
from nas.evaluators import get_evaluator
from nas.evaluators.train import TrainConfig, Trainer
from nas.model import build_model
from nas.weights import load_model, load_weights, model_from_weights, save_weights

SPACE = get_space("nb201")
CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"


def test_digits_split_is_fixed_and_disjoint():
    a, b = load_digits(0), load_digits(0)
    np.testing.assert_array_equal(a.y_val, b.y_val)
    assert len(a.x_train) + len(a.x_val) == 1797 and a.input_shape == (8, 8, 1)


def test_training_learns_and_compiles_once(tmp_path):
    graph = SPACE.to_graph(SPACE.parse(CELL), "digits")
    data = load_digits(0)
    model = build_model(graph, seed=0)
    trainer = Trainer(model, TrainConfig(steps=60, seed=0))
    before = trainer.evaluate(data.x_val, data.y_val)["accuracy"]
    metrics = trainer.fit(data)
    after = trainer.evaluate(data.x_val, data.y_val)["accuracy"]
    assert trainer.traces == 1, "one compile per architecture, not per step"
    assert after > 85.0 and after > before + 30, (before, after)
    assert np.isfinite(metrics["train_loss"])
    # Weights round-trip through safetensors into a fresh model of the same graph.
    path = save_weights(model, tmp_path / "w.safetensors")
    fresh = load_weights(build_model(graph, seed=7), path)
    fresh.eval()
    model.eval()
    np.testing.assert_allclose(
        np.asarray(fresh(data.x_val[:8])), np.asarray(model(data.x_val[:8])), rtol=1e-5, atol=1e-5
    )
    # ... and into a model built straight from the file (no initialisation)
    built = model_from_weights(graph, path, seed=7)
    built.eval()
    np.testing.assert_allclose(
        np.asarray(built(data.x_val[:8])), np.asarray(model(data.x_val[:8])), rtol=1e-5, atol=1e-5
    )
    other = SPACE.to_graph(SPACE.parse(CELL.replace("skip_connect~1", "nor_conv_3x3~1")), "digits")
    with pytest.raises(DataError, match="does not fit the architecture: node .* no weight"):
        model_from_weights(other, path)


def test_evaluator_returns_typed_result_and_writes_weights(tmp_path):
    ev = get_evaluator("train", SPACE, "digits", steps=20)
    res = ev.evaluate(SPACE.parse(CELL), tmp_path)
    assert res.ok and 0 <= res.metrics["accuracy"] <= 100
    assert res.cost["params"] == SPACE.to_graph(SPACE.parse(CELL), "digits").params()
    model = load_model(tmp_path)
    model.eval()
    assert model(load_digits(0).x_val[:3]).shape == (3, 10)


def test_nan_training_is_a_failed_result():
    ev = get_evaluator("train", SPACE, "digits", steps=5, lr=1e30)
    res = ev.evaluate(SPACE.parse(CELL))
    assert res.status == "failed" and "non-finite" in res.error


def test_missing_cifar_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        get_evaluator("train", SPACE, "cifar10", data_dir=str(tmp_path))
    with pytest.raises(UnknownName):
        get_evaluator("train", SPACE, "svhn")


def test_cifar_folder_is_read(tmp_path):
    import pickle

    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, 20)),
        }
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    ev = get_evaluator("train", SPACE, "cifar10", data_dir=str(tmp_path), steps=2, batch_size=10)
    assert ev.data.x_train.shape == (100, 32, 32, 3) and ev.data.x_val.shape == (20, 32, 32, 3)


def test_batch_is_sharded_over_two_devices():
    """The same training code on two (fake CPU) devices shards the batch along ``data``."""
    code = textwrap.dedent(
        f"""
        import json, jax
        from nas.data import load_digits
        from nas.evaluators.train import TrainConfig, Trainer
        from nas.model import build_model
        from nas.search_spaces import get_space
        s = get_space("nb201")
        g = s.to_graph(s.parse({CELL!r}), "digits")
        data = load_digits(0)
        t = Trainer(build_model(g), TrainConfig(steps=30, batch_size=64))
        x = t.shard(data.x_train[:64])
        t.fit(data)
        print(json.dumps({{"devices": len(jax.devices()),
                          "shards": len(x.addressable_shards),
                          "shard_rows": x.addressable_shards[0].data.shape[0],
                          "acc": t.evaluate(data.x_val, data.y_val)["accuracy"],
                          "traces": t.traces}}))
        """
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["devices"] == 2 and info["shards"] == 2 and info["shard_rows"] == 32
    assert info["traces"] == 1 and info["acc"] > 50
