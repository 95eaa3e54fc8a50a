"""Training elastic supernets: OFA's progressive shrinking and BigNAS's sandwich rule.

Both are one jitted step, :meth:`ElasticTrainer.step`, over a *batch of subnets* (an
encoded :data:`~search_spaces.ofa.supernet.Arch` with a leading subnet axis): the losses of
the subnets are summed and one optimiser update follows, which is what OFA's gradient
accumulation over ``dynamic_batch_size`` subnets and BigNAS's sandwich step do. Subnets are
traced arrays, so the step compiles once per (resolution, number of subnets, distillation
on/off, whether the first subnet is the largest) and serves every subnet. Up to ``unroll``
further subnets are traced one after the other (XLA:CPU runs straight-line code faster than a
loop body); more share one ``lax.scan``.

- Progressive shrinking (OFA, :func:`progressive_shrinking`): the full network first; then
  elastic kernel; elastic depth ({3,4}, then {2,3,4}); elastic expand ({4,6}, then {3,4,6})
  after sorting the middle channels by importance. From the kernel phase on, every subnet
  also learns from the frozen full network (knowledge distillation, OFA's
  ``loss = CE + kd_ratio * soft-CE(teacher)``).
- Sandwich rule (BigNAS, ``search_spaces/bignas``): every step trains the largest child with
  the labels, and the smallest and random children on the largest child's soft predictions
  of the same step (in-place distillation; the teacher's logits are not differentiated).

BN recalibration (:func:`calibrate_bn`) resets nothing in the supernet: it computes a
subnet's exact mean and variance over a few batches (cumulative averages, OFA's
``set_running_statistics``) into a copy of the statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from search_spaces.ofa.supernet import ElasticMBNet, stack_archs


@dataclass(frozen=True)
class ElasticTrainConfig:
    """Settings of supernet training.

    Attributes:
        steps: total optimiser steps (progressive shrinking splits them over its phases).
        batch_size: images per step (every subnet of a step sees the same batch).
        lr: peak learning rate (cosine decay, linear warm-up).
        optimizer: ``sgd`` (Nesterov momentum 0.9, OFA and BigNAS) or ``adamw``.
        weight_decay: decay of conv/linear weights only (BN and biases are not decayed, as
            in OFA's ``no_decay_keys='bn#bias'`` and BigNAS).
        warmup: warm-up steps.
        kd_ratio: weight of the distillation loss (OFA: 1.0).
        label_smoothing: on the hard-label loss (OFA and BigNAS: 0.1).
        seed: data order and subnet sampling.
        unroll: a step with at most this many subnets after the first traces each one
            (longer compile, faster steps: a sandwich step of OFA-MobileNetV3 at 128x128
            takes 4.7 s instead of 6.5 s, compiling in 111 s instead of 86 s); more run
            under one ``lax.scan``.
    """

    steps: int = 200
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 3e-5
    warmup: int = 5
    kd_ratio: float = 1.0
    label_smoothing: float = 0.1
    seed: int = 0
    unroll: int = 3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _decay_mask(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def make_optimizer(config: ElasticTrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.lr, max(1, config.warmup), max(config.steps, config.warmup + 1)
    )
    if config.optimizer == "sgd":
        opt = optax.chain(
            optax.add_decayed_weights(config.weight_decay, _decay_mask),
            optax.sgd(schedule, momentum=0.9, nesterov=True),
        )
    elif config.optimizer == "adamw":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay, mask=_decay_mask)
    else:
        from nas.errors import ConfigError

        raise ConfigError(f"unknown optimizer {config.optimizer!r}; use sgd or adamw")
    return optax.chain(optax.clip_by_global_norm(5.0), opt)


def _soft_ce(logits: jax.Array, target_logits: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy(logits, jax.nn.softmax(target_logits)).mean()


def _hard_ce(logits: jax.Array, y: jax.Array, n: int, smoothing: float) -> jax.Array:
    labels = optax.smooth_labels(jax.nn.one_hot(y, n), smoothing)
    return optax.softmax_cross_entropy(logits, labels).mean()


class ElasticTrainer:
    """The jitted training step of an elastic supernet.

    Args:
        model: the supernet (trained in place).
        config: the settings.

    Attributes:
        traces: how many times a step was traced (compiled).
    """

    def __init__(self, model: ElasticMBNet, config: ElasticTrainConfig) -> None:
        self.model = model
        self.config = config
        self.optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
        self.traces = 0
        n_cls = model.layout.n_classes
        smooth = config.label_smoothing
        unroll = config.unroll
        trainer = self

        @nnx.jit(static_argnames=("mode", "first_full"))
        def step(model, optimizer, teacher, x, y, archs, kd_ratio, mode, first_full):
            trainer.traces += 1  # runs only while tracing

            def loss_fn(model):
                t_logits = None
                if mode == "kd":
                    t_logits = jax.lax.stop_gradient(
                        teacher(x, teacher.max_arch_arrays(), full=True)
                    )
                first = {k: v[0] for k, v in archs.items()}
                rest = {k: v[1:] for k, v in archs.items()}
                logits0 = model(x, first, full=first_full)
                total = _hard_ce(logits0, y, n_cls, smooth)
                if mode == "kd":
                    total = total + kd_ratio * _soft_ce(logits0, t_logits)
                n_rest = rest["ks"].shape[0]
                if n_rest == 0:
                    return total, logits0
                target = jax.lax.stop_gradient(logits0) if mode == "sandwich" else t_logits

                def subnet_loss(m, arch):
                    logits = m(x, arch)
                    if mode == "sandwich":
                        return _soft_ce(logits, target)
                    loss = _hard_ce(logits, y, n_cls, smooth)
                    if mode == "kd":
                        loss = loss + kd_ratio * _soft_ce(logits, target)
                    return loss

                if n_rest <= unroll:
                    for i in range(n_rest):
                        total = total + subnet_loss(model, {k: v[i] for k, v in rest.items()})
                    return total, logits0
                # More subnets run under one lax.scan (one compiled body whatever their
                # number); BN statistics travel in the carry.
                gdef, params, other = nnx.split(model, nnx.Param, ...)

                def body(carry, arch):
                    other, acc = carry
                    m = nnx.merge(gdef, params, other)
                    loss = subnet_loss(m, arch)
                    return (nnx.state(m, nnx.Not(nnx.Param)), acc + loss), None

                (other, total), _ = jax.lax.scan(body, (other, total), rest)
                nnx.update(model, other)
                return total, logits0

            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            optimizer.update(model, grads)
            return loss, jnp.mean(jnp.argmax(logits, -1) == y)

        self._step = step

    def step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        archs: Sequence[dict[str, np.ndarray]],
        mode: str = "plain",
        teacher: ElasticMBNet | None = None,
    ) -> tuple[float, float]:
        """One update on the summed loss of ``archs``.

        Args:
            mode: ``plain`` (labels), ``kd`` (labels + distillation from ``teacher``'s full
                network) or ``sandwich`` (first subnet on labels, the rest on its logits).
        """
        self.model.train()
        top = self.model.max_arch_arrays()
        # The largest subnet first (a sandwich step, OFA's full phase) runs without conds: a
        # second compiled step, taken only when the first subnet is the largest.
        first_full = all(np.array_equal(archs[0][k], v) for k, v in top.items() if k != "drop")
        loss, acc = self._step(
            self.model,
            self.optimizer,
            teacher,
            jnp.asarray(x),
            jnp.asarray(y),
            stack_archs(archs),
            jnp.float32(self.config.kd_ratio),
            mode,
            first_full,
        )
        return float(loss), float(acc)


# --------------------------------------------------------------------------------------
# BN recalibration and subnet evaluation
# --------------------------------------------------------------------------------------


@nnx.jit
def _calib_step(model, x, arch, momentum):
    for _, m in nnx.iter_modules(model):
        if hasattr(m, "momentum") and isinstance(m.momentum, nnx.Variable):
            m.momentum[...] = momentum
    model(x, arch)


@nnx.jit
def _predict(model, x, arch):
    return model(x, arch)


def calibrate_bn(model: ElasticMBNet, arch: dict[str, np.ndarray], batches: Sequence[np.ndarray]):
    """Set the BN statistics of ``arch``'s layers to their exact averages over ``batches``
    (OFA's ``set_running_statistics``); returns the previous statistics for
    :func:`restore_bn`."""
    # copies: nnx.state's leaves are the live variables, which calibration overwrites
    saved = jax.tree_util.tree_map(jnp.array, nnx.state(model, nnx.BatchStat))
    mom = jax.tree_util.tree_map(jnp.array, nnx.state(model, _momentum_filter))
    model.train()
    for i, xb in enumerate(batches):
        _calib_step(model, jnp.asarray(xb), arch, jnp.float32(1.0 / (i + 1)))
    nnx.update(model, mom)
    return saved


def _momentum_filter(path: Any, value: Any) -> bool:
    from search_spaces.ofa.supernet import BNMomentum

    return isinstance(value, BNMomentum)


def restore_bn(model: ElasticMBNet, saved: Any) -> None:
    nnx.update(model, saved)


def subnet_accuracy(
    model: ElasticMBNet,
    arch: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy (percent) of a subnet in evaluation mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = _predict(model, jnp.asarray(x[i : i + batch_size]), arch)
        correct += int(jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(y[i : i + batch_size])))
    model.train()
    return 100.0 * correct / len(x)


def evaluate_subnet(
    model: ElasticMBNet,
    arch: dict[str, np.ndarray],
    calib: Sequence[np.ndarray],
    x_val: np.ndarray,
    y_val: np.ndarray,
) -> float:
    """Accuracy of a subnet with inherited weights after BN recalibration (the supernet's
    own statistics are left as they were)."""
    saved = calibrate_bn(model, arch, calib)
    try:
        return subnet_accuracy(model, arch, x_val, y_val)
    finally:
        restore_bn(model, saved)


# --------------------------------------------------------------------------------------
# Progressive shrinking
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase: the choices sampled from and subnets per step."""

    name: str
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    subnets: int
    distill: bool


OFA_PHASES = (
    Phase("full", (7,), (6,), (4,), 1, False),
    Phase("kernel", (3, 5, 7), (6,), (4,), 1, True),
    Phase("depth-1", (3, 5, 7), (6,), (3, 4), 2, True),
    Phase("depth-2", (3, 5, 7), (6,), (2, 3, 4), 2, True),
    Phase("expand-1", (3, 5, 7), (4, 6), (2, 3, 4), 4, True),
    Phase("expand-2", (3, 5, 7), (3, 4, 6), (2, 3, 4), 4, True),
)
"""OFA's schedule for OFA-MobileNetV3 (``train_ofa_net.py``): task, phase, choices and
``dynamic_batch_size`` (1 for kernel, 2 for depth, 4 for expand)."""


def sample_phase(phase: Phase, space: Any, rng: np.random.Generator, resolution: int = 224):
    """A random genotype of ``space`` restricted to the phase's choices."""
    n = space.genotype_cls.n_layers
    from search_spaces.ofa.network import N_UNITS

    return space.genotype_cls(
        tuple(int(rng.choice(phase.ks)) for _ in range(n)),
        tuple(int(rng.choice(phase.e)) for _ in range(n)),
        tuple(int(rng.choice(phase.d)) for _ in range(N_UNITS)),
        resolution,
    )


def progressive_shrinking(
    model: Any,
    space: Any,
    data: Any,
    config: ElasticTrainConfig,
    phases: Sequence[Phase] = OFA_PHASES,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train an OFA supernet by progressive shrinking (``config.steps`` split evenly over the
    phases; the expand phases start with channel sorting).

    Returns a summary: per-phase last loss/accuracy, step traces, seconds.
    """
    rng = np.random.default_rng(config.seed)
    trainer = ElasticTrainer(model, config)
    per = max(1, config.steps // len(phases))
    n = len(data.x_train)
    bs = min(config.batch_size, n)
    order, pos = rng.permutation(n), 0
    teacher = None
    sorted_channels = False
    summary: dict[str, Any] = {"phases": []}
    t0 = time.perf_counter()
    for phase in phases:
        if len(phase.e) > 1 and not sorted_channels:
            model.reorganize_channels()
            sorted_channels = True
        if phase.distill and teacher is None:
            teacher = nnx.clone(model)
            teacher.eval()
        loss = acc = float("nan")
        for _ in range(per):
            if pos + bs > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos : pos + bs]
            pos += bs
            archs = [model.arch(sample_phase(phase, space, rng)) for _ in range(phase.subnets)]
            loss, acc = trainer.step(
                data.x_train[idx],
                data.y_train[idx],
                archs,
                mode="kd" if phase.distill else "plain",
                teacher=teacher if phase.distill else None,
            )
        summary["phases"].append({"phase": phase.name, "loss": loss, "train_accuracy": 100 * acc})
        if log:
            log(f"{phase.name}: loss {loss:.3f} acc {100 * acc:.1f}")
    summary["traces"] = trainer.traces
    summary["seconds"] = time.perf_counter() - t0
    summary["steps"] = per * len(phases)
    return summary
