"""The weight-sharing engine: the input pipeline, resumable training (kill -9, SIGTERM),
elastic resolution in training and scoring, and the protocol's declarations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nas.data import load_digits
from nas.pipeline import NO_AUGMENT, Augment, Batches, eval_view, fixed_batches
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def digits():
    return load_digits(0)


# ------------------------------------------------------------------ pipeline


def test_batches_depend_on_seed_and_step_only(digits):
    aug = Augment(crop_scale=(0.3, 1.0), flip=True)
    a = Batches(digits.x_train, digits.y_train, 32, seed=3, augment=aug, channels=3)
    b = Batches(digits.x_train, digits.y_train, 32, seed=3, augment=aug, channels=3)
    xa, ya = a(7, 24)
    assert xa.shape == (32, 24, 24, 3) and xa.dtype == np.float32
    np.testing.assert_array_equal(xa[..., 0], xa[..., 2])  # grey repeated to RGB
    xb, yb = b(7, 24)  # a fresh pipeline (a resumed run) gives the same batch
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a(8, 24)[0], xa)
    other = Batches(digits.x_train, digits.y_train, 32, seed=4, augment=aug)(7, 24)[0]
    assert not np.array_equal(other, xa[..., :1])
    # built ahead on worker threads = built on demand; the resolution may follow the step
    got = list(a.iterate(5, 9, resolution=lambda s: 16 if s % 2 else 12, workers=3))
    assert [s for s, _, _ in got] == [5, 6, 7, 8]
    for s, x, y in got:
        np.testing.assert_array_equal(x, b(s, 16 if s % 2 else 12)[0])
        np.testing.assert_array_equal(y, b(s)[1])
    # across an epoch boundary, three threads at once, and a consumer that stops early
    per_epoch = len(digits.x_train) // 32
    feed = a.iterate(per_epoch - 3, per_epoch + 40, 12, prefetch=4, workers=3)
    for (s, x, _), _ in zip(feed, range(6), strict=False):
        np.testing.assert_array_equal(x, b(s, 12)[0])
    feed.close()
    # an epoch visits every image once
    per_epoch = len(digits.x_train) // 32
    seen = np.concatenate([a.indices(s) for s in range(per_epoch)])
    assert len(np.unique(seen)) == len(seen) == per_epoch * 32


def test_resize_and_views_are_exact_where_they_should_be(digits):
    x = digits.x_val[:4]
    np.testing.assert_array_equal(eval_view(x, 8), x)  # the stored size: unchanged
    up = eval_view(x, 32)
    assert up.shape == (4, 32, 32, 1)
    # bilinear upsampling by 4 then block-averaging the 4x4 blocks' centres recovers x
    np.testing.assert_allclose(up[:, 1::4, 1::4].mean(), x.mean(), atol=0.05)
    np.testing.assert_allclose(eval_view(up, 8), eval_view(up, 8, NO_AUGMENT))
    cal = fixed_batches(digits.x_train, 2, 16, seed=0, resolution=24, channels=3)
    assert [c.shape for c in cal] == [(16, 24, 24, 3)] * 2
    again = fixed_batches(digits.x_train, 2, 16, seed=0, resolution=24, channels=3)
    np.testing.assert_array_equal(cal[0], again[0])


# ------------------------------------------------------------------ resumable training

RESUME_STEPS = 8


def train_macro(ckpt_dir: str, pause: float = 0.0) -> np.ndarray:
    """Train the NB-Macro digits supernet for RESUME_STEPS steps with checkpoints every 2
    steps in ``ckpt_dir`` (resuming one found there); returns its parameters, flattened.
    ``pause`` seconds after each step give a test time to kill the process."""
    import jax
    from flax import nnx
    from nas.search_spaces.nbmacro import NBMacroSpace
    from nas.search_spaces.nbmacro.supernet import MacroNet

    from nas.checkpoint import Checkpointer
    from nas.training import run_training

    data = load_digits(0)
    net = MacroNet(NBMacroSpace(), "digits", seed=0)
    opts = MacroNet.defaults.__class__(**{**MacroNet.defaults.to_json(), "steps": RESUME_STEPS})
    task = net.training(opts, seed=0)
    batches = Batches(data.x_train, data.y_train, 32, seed=0)

    def log(step, loss, acc):
        print(f"step {step + 1}", flush=True)
        time.sleep(pause)

    ckpt = Checkpointer(ckpt_dir, every=2) if ckpt_dir else None
    run_training(task, batches, RESUME_STEPS, checkpointer=ckpt, progress=False, log=log)
    leaves = jax.tree.leaves(nnx.state(net.model, nnx.Param))
    return np.concatenate([np.asarray(v).ravel() for v in leaves])


def _start(ckpt: Path, pause: float) -> subprocess.Popen:
    code = (
        "import sys, numpy as np; from tests.test_supernet_engine import train_macro; "
        f"np.save(sys.argv[2], train_macro(sys.argv[1], {pause}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(ckpt), str(ckpt.parent / "final.npy")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _wait_for(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdout is not None
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"never printed {line!r}: {proc.stderr.read() if proc.stderr else ''}")


def test_resumed_training_ends_with_the_uninterrupted_weights(tmp_path, digits):
    """In one process (one compile): 8 steps straight; then 4 steps with checkpoints, the
    state wiped, and a run to 8 that restores step 4: the same weights, bit for bit."""
    import jax
    from nas.search_spaces.nbmacro import NBMacroSpace
    from nas.search_spaces.nbmacro.supernet import MacroNet

    from nas.checkpoint import Checkpointer
    from nas.training import run_training

    net = MacroNet(NBMacroSpace(), "digits", seed=0)
    opts = MacroNet.defaults.__class__(**{**MacroNet.defaults.to_json(), "steps": 8})
    task = net.training(opts, seed=0)
    batches = Batches(digits.x_train, digits.y_train, 32, seed=0)
    initial = [np.asarray(v).copy() for v in task.leaves()]
    run_training(task, batches, 8, progress=False)
    straight = [np.asarray(v).copy() for v in task.leaves()]

    task.set_leaves([jax.numpy.asarray(v) for v in initial])
    ckpt = Checkpointer(tmp_path / "ckpt", every=2)
    first = run_training(task, batches, 4, checkpointer=ckpt, progress=False)
    assert first["resumed_from"] == 0 and ckpt.latest_step() == 4
    task.set_leaves([jax.numpy.zeros_like(v) for v in initial])  # a fresh process knows nothing
    second = run_training(task, batches, 8, checkpointer=ckpt, progress=False)
    assert second["resumed_from"] == 4 and task.traces == 1
    for a, b in zip(straight, task.leaves(), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_weights(tmp_path):
    """Slow: three fresh processes each compile the step. kill -9 after step 3 (checkpoint at 2), restart, SIGTERM after step 5 (saves 5 and
    stops), restart: the weights equal those of a run never interrupted, bit for bit."""
    ckpt = tmp_path / "ckpt"
    proc = _start(ckpt, pause=1.0)
    _wait_for(proc, "step 3")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert sorted(p.name for p in ckpt.iterdir() if p.name.isdigit()) == ["2"]

    proc = _start(ckpt, pause=1.0)
    _wait_for(proc, "step 5")  # resumed at 3: steps 1-2 are not run again
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "stopped by SIGTERM after step 5" in err
    assert "5" in {p.name for p in ckpt.iterdir()}

    proc = _start(ckpt, pause=0.0)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert out.splitlines() == [f"step {s}" for s in range(6, RESUME_STEPS + 1)]
    resumed = np.load(tmp_path / "final.npy")
    np.testing.assert_array_equal(resumed, train_macro(""))


# ------------------------------------------------------------------ declarations


def test_spaces_declare_their_supernet_and_others_are_refused():
    from nas.search_spaces import get_space

    from nas.errors import ConfigError
    from nas.evaluators.oneshot import SupernetEvaluator
    from nas.supernet import Supernet, supernet_class

    for name in ("spos", "nbmacro", "ofa", "bignas"):
        assert issubclass(supernet_class(get_space(name)), Supernet)
    with pytest.raises(ConfigError, match=r"space 'nb201' has no weight-sharing supernet.*"):
        SupernetEvaluator(get_space("nb201"), "digits")
    with pytest.raises(ConfigError, match="resolutions must be > 0"):
        SupernetEvaluator(get_space("bignas"), "digits", options={"resolutions": [0]})


# ------------------------------------------------------------------ elastic resolution

from nas.search_spaces.bignas.space import BigNASSpace  # noqa: E402
from nas.search_spaces.ofa.elastic import ElasticNet, ElasticTraining  # noqa: E402


def _tiny_layout():
    from nas.search_spaces.ofa.supernet import NetLayout, StageLayout

    return NetLayout(
        in_channels=3,
        stem_width=8,
        stem_act="swish",
        stages=(
            StageLayout(8, 2, "swish", False, 1, (3,), 1),
            StageLayout(16, 2, "swish", False, 2, (3, 5), 4),
        ),
        head_width=32,
        head_act="swish",
        feature_mix=0,
        n_classes=10,
        kernel_transform=False,
    )


class _Largest(ElasticTraining):
    """Plain training of the largest subnet (a stand-in for the families' schedules)."""

    def __init__(self, net, options, seed, resolutions):
        from nas.search_spaces.ofa.elastic import elastic_config
        from nas.search_spaces.ofa.train import ElasticTrainer

        super().__init__(net, options, seed, resolutions)
        self.trainer = ElasticTrainer(net.model, elastic_config(options, seed))

    def step(self, step, x, y):
        return self.trainer.step(x, y, [self.model.max_arch_arrays()])


class TinyElasticNet(ElasticNet):
    """A tiny elastic MobileNet standing in for BigNAS's (whose full step compiles for
    minutes): every genotype is its largest subnet at the genotype's own resolution."""

    def build(self, space, dataset, seed):
        from nas.search_spaces.ofa.supernet import ElasticMBNet

        return ElasticMBNet(_tiny_layout(), seed=seed)

    def encode(self, genotype):
        return self.model.max_arch_arrays()

    def training(self, options, seed):
        return _Largest(self, options, seed, self.train_resolutions)


class TinyBigNAS(BigNASSpace):
    supernet = "tests.test_supernet_engine:TinyElasticNet"


def test_elastic_resolution_is_trained_and_scored_at_the_genotypes_size(tmp_path):
    """Training samples its resolutions (one compile each); the same child scored at two
    resolutions gives two accuracies, and its cost follows the resolution."""
    from dataclasses import replace

    from nas.evaluators.oneshot import SupernetEvaluator

    space = TinyBigNAS()
    opts = {
        "steps": 6, "batch_size": 32, "resolutions": [16, 24], "lr": 0.05, "progress": False,
        "eval_limit": 96, "eval_batch_size": 48, "calib_batches": 1, "calib_batch_size": 32,
    }  # fmt: skip
    ev = SupernetEvaluator(space, "digits", seed=0, run_dir=tmp_path, options=opts)
    small = space.known()["min"]  # resolution 192
    big = replace(small, r=320)
    a_small, a_big = ev.accuracy(small), ev.accuracy(big)
    assert ev.train_summary["traces"] == 2  # a step per training resolution
    assert ev.supernet().resolution(big) == 320
    assert a_small != a_big
    c_small, c_big = ev.cost(small), ev.cost(big)
    assert c_big["params"] == c_small["params"]
    assert c_big["flops"] == pytest.approx(c_small["flops"] * (320 / 192) ** 2, rel=0.05)


# ------------------------------------------------------------------ one compiled step per phase


@pytest.mark.parametrize("name", ["sgd", "adamw", "rmsprop"])
def test_a_learning_rate_given_per_update_trains_as_the_schedule_inside_does(name):
    """:func:`optimizer_given_lr` fed the schedule's values step by step updates the
    parameters as the optimiser with the schedule inside it does (warm-up, then cosine)."""
    import jax.numpy as jnp

    from nas.training import TrainingOptions, optimizer, optimizer_given_lr, schedule

    opts = TrainingOptions(steps=6, lr=0.1, optimizer=name, nesterov=True, warmup=2)
    inside, given = optimizer(opts), optimizer_given_lr(opts)
    lr_at = schedule(opts)
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.ones(4)}
    p1, p2 = params, params
    s1, s2 = inside.init(params), given.init(params)
    for step in range(6):
        g = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
        u1, s1 = inside.update(g, s1, p1)
        u2, s2 = given.update(g, s2, p2, learning_rate=lr_at(step))
        p1 = {k: p1[k] + u1[k] for k in p1}
        p2 = {k: p2[k] + u2[k] for k in p2}
    assert float(lr_at(0)) == 0.0 and float(lr_at(2)) == pytest.approx(0.1)
    for k in params:
        np.testing.assert_allclose(np.asarray(p1[k]), np.asarray(p2[k]), rtol=1e-6, atol=1e-7)
        assert not np.allclose(np.asarray(p1[k]), np.asarray(params[k]))


def test_reset_optimizer_zeroes_the_momentum_and_keeps_the_compiled_step(digits):
    """A new phase starts a new optimiser (OFA) without a new compile."""
    import jax
    from nas.search_spaces.ofa.supernet import ElasticMBNet
    from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer

    from nas.training import optimizer_given_lr

    model = ElasticMBNet(_tiny_layout(), seed=0)
    cfg = ElasticTrainConfig(optimizer="sgd", lr=0.05, grad_clip=0.0)
    tr = ElasticTrainer(model, cfg, tx=optimizer_given_lr(cfg))
    from nas.pipeline import match_channels

    x = match_channels(eval_view(digits.x_train[:16], 16), 3)
    y = digits.y_train[:16]
    arch = [model.max_arch_arrays()]
    tr.step(x, y, arch, lr=0.05)

    def momentum():
        return [np.asarray(v) for v in jax.tree.leaves(tr.optimizer.opt_state)]

    assert any(np.abs(m).sum() > 0 for m in momentum())
    tr.reset_optimizer()
    assert all(np.abs(m).sum() == 0 for m in momentum())
    before = [np.asarray(v).copy() for v in jax.tree.leaves(nnx_params(model))]
    tr.step(x, y, arch, lr=0.0)  # no step size: weights stay, momentum fills again
    after = [np.asarray(v) for v in jax.tree.leaves(nnx_params(model))]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(m).sum() > 0 for m in momentum())
    assert tr.traces == 1


def nnx_params(model):
    from flax import nnx

    return nnx.state(model, nnx.Param)


@pytest.mark.slow
def test_progressive_shrinking_compiles_one_step_per_shape_across_its_six_phases(digits):
    """OFA's six phases need four step programs (1 subnet plain; 1, 2 and 4 subnets with
    distillation): a phase with its own rate and warm-up does not compile again, and each
    phase starts with the learning rate its own schedule gives."""
    from nas.search_spaces import get_space
    from nas.search_spaces.ofa.elastic import OFA_PHASES, OFANet, ProgressiveShrinking

    from nas.training import run_training, schedule

    net = OFANet(get_space("ofa"), "digits", seed=0)
    opts = replace_steps(OFANet.defaults, 12)
    task = ProgressiveShrinking(net, opts, seed=0, resolutions=(32,))
    seen: list[float] = []
    step = task.step

    def record(s, x, y):
        out = step(s, x, y)
        seen.append(float(task.lr_at(s - task.starts[task.current])))
        return out

    task.step = record  # type: ignore[method-assign]
    batches = Batches(digits.x_train, digits.y_train, 8, seed=0, channels=3)
    run_training(task, batches, 12, progress=False)
    assert task.trainer.traces == 4
    for i, phase in enumerate(OFA_PHASES):
        n = task.lengths[i]
        warm = round(n * phase.warmup_epochs / phase.epochs)
        first = schedule(
            replace_steps(opts, n, warmup=warm), lr=opts.lr * phase.lr / OFA_PHASES[1].lr
        )(0)
        assert seen[task.starts[i]] == pytest.approx(float(first))


def replace_steps(opts, steps, **more):
    from dataclasses import replace

    return replace(opts, steps=steps, **more)
