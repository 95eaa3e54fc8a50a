"""Exporting trials: a supernet-scored trial exports its child with the inherited weights,
and a trained trial's ONNX export computes what its flax export computes."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nas.data import load_digits
from nas.export import export_trial
from nas.storage import TrialStore, find_record
from nas.weights import load_model
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def digits():
    return load_digits(0)


def _accuracy(logits, y) -> float:
    return 100.0 * float(np.mean(np.argmax(np.asarray(logits), -1) == y))


def _search(out: Path, *args: str) -> dict:
    r = run_cli(
        "search", "--dataset", "digits", "--seed", "0", *args,
        "--out", str(out), "--no-progress", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_path_supernet_trial_exports_its_child_with_inherited_weights(tmp_path, digits):
    """nbmacro + supernet evaluator through the CLI; the flax export reproduces the trial."""
    from nas.search_spaces.nbmacro import NBMacroSpace

    from nas.evaluators import get_evaluator
    from nas.oneshot import Mode

    out = tmp_path / "run"
    res = _search(
        out, "--space", "nbmacro", "--strategy", "random", "--evaluator", "supernet",
        "--budget", "2", "--steps", "3",
    )  # fmt: skip
    assert res["n_trials"] == 2 and res["n_failed"] == 0
    (supernet_file,) = (out / "supernet").glob("*.safetensors")
    exp = tmp_path / "exp"
    r = run_cli(
        "export", "--storage", res["storage"], "--study", res["study"], "--trial", "best",
        "--format", "flax", "--out", str(exp),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((exp / "arch.json").read_text())
    assert doc["genotype"]["arch"] == res["best_arch"]
    w = doc["weights"]
    assert w["trained"] is True and w["source"] == "supernet" and w["file"] == "weights.safetensors"
    assert Path(w["supernet"]).resolve() == supernet_file.resolve()

    model = load_model(exp)
    model.eval()
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(digits.x_val)))
    # the exported model reproduces the trial's stored accuracy on the evaluator's data
    assert _accuracy(ours, digits.y_val) == pytest.approx(res["best_metrics"]["accuracy"], rel=1e-6)
    # and computes what the supernet computes on that path (BN recalibrated as in scoring)
    space = NBMacroSpace()
    ev = get_evaluator("supernet", space, "digits", run_dir=out, steps=3, seed=0)
    assert ev.supernet_file() == supernet_file
    supernet = ev.supernet().model
    path = supernet.path_of(space.parse(res["best_arch"]))
    ev.calibrate(space.parse(res["best_arch"]))
    theirs = nnx.jit(lambda m, x, p: m(x, p, Mode(False)))(
        supernet, jnp.asarray(digits.x_val), jnp.asarray(path)
    )
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-4, atol=1e-4)

    # neither the trial's child nor the supernet file: one line naming the file, exit 2
    for child in out.glob("trials/*/weights.safetensors"):
        child.unlink()
    moved = supernet_file.with_suffix(".moved")
    supernet_file.rename(moved)
    r = run_cli(
        "export", "--storage", res["storage"], "--study", res["study"], "--trial", "best",
        "--format", "flax", "--out", str(tmp_path / "exp2"),
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert str(supernet_file) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_elastic_supernet_trial_exports_its_child_with_inherited_weights(tmp_path, digits):
    """BigNAS (elastic): a trial exports the child the evaluator wrote, and, when the trial
    folder's copy is gone, the same child rebuilt from the supernet file.

    The supernet file is a freshly initialised BigNAS supernet written where the evaluator
    looks for a trained one (it loads it instead of training): compiling even one sandwich
    step of the whole supernet takes minutes on a CPU, and training is tested elsewhere
    (test_bignas, the slow OFA CLI test). BN recalibration, scoring and extraction are real.
    """
    from nas.search_spaces import get_space
    from nas.search_spaces.bignas.supernet import BigNASNet

    from nas.config import SearchConfig
    from nas.evaluators import get_evaluator
    from nas.search import run_search
    from nas.weights import save_weights

    space = get_space("bignas")
    ev = get_evaluator(
        "supernet", space, "digits", steps=1, batch_size=32, calib_batches=2,
        run_dir=tmp_path / "run", eval_limit=64,
    )  # fmt: skip
    supernet_file = ev.supernet_file()
    save_weights(BigNASNet(space, "digits", seed=0).model, supernet_file)
    config = SearchConfig.build(
        dict(space="bignas", strategy="random", evaluator="supernet", budget=1,
             dataset="digits", out=tmp_path / "run", progress=False)
    )  # fmt: skip
    res = run_search(config, evaluator=ev)
    assert res.n_failed == 0
    study = TrialStore.open(res.storage, res.study)
    rec = find_record(study, "best")
    assert rec.artifacts["supernet"] == str(supernet_file)
    assert Path(rec.artifacts["weights"]).exists()

    first = export_trial(res.storage, res.study, "best", "flax", tmp_path / "a")
    assert first["weights"]["source"] == "supernet" and first["weights"]["trained"] is True
    Path(rec.artifacts["weights"]).unlink()  # the trial folder's child is gone
    doc = export_trial(res.storage, res.study, "best", "flax", tmp_path / "b")
    assert doc["weights"] == {
        "file": "weights.safetensors",
        "trained": True,
        "source": "supernet",
        "supernet": str(supernet_file),
    }
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "a" / "weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # rebuilt from the supernet file = what the evaluator wrote while scoring
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-6, err_msg=k)

    model = load_model(tmp_path / "b")
    model.eval()
    from nas.pipeline import eval_view

    geno = space.parse(rec.arch)
    x = eval_view(digits.x_val[:64], geno.resolution, channels=3)
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x)))
    assert _accuracy(ours, digits.y_val[:64]) == pytest.approx(rec.accuracy, rel=1e-6)
    ev.calibrate(geno)
    theirs = ev.supernet().logits(geno, x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_cli_onnx_export_of_a_trained_trial_matches_its_flax_export(tmp_path, digits):
    ort = pytest.importorskip("onnxruntime")
    res = _search(
        tmp_path / "run", "--space", "nb201", "--strategy", "random", "--evaluator", "train",
        "--budget", "1", "--steps", "2",
    )  # fmt: skip
    r = run_cli(
        "export", "--storage", res["storage"], "--study", res["study"], "--trial", "best",
        "--format", "onnx", "--out", str(tmp_path / "onnx"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "onnx" / "arch.json").read_text())
    assert doc["onnx"] == {"file": "model.onnx", "trained": True, "source": "trial"}
    export_trial(res["storage"], res["study"], "best", "flax", tmp_path / "flax")
    model = load_model(tmp_path / "flax")
    model.eval()
    ref = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(digits.x_val)))
    sess = ort.InferenceSession(
        str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got = sess.run(None, {"input": digits.x_val.astype(np.float32)})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert _accuracy(got, digits.y_val) == pytest.approx(res["best_metrics"]["accuracy"], rel=1e-6)
