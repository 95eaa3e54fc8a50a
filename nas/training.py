"""What every trainer shares: one option family, one optimiser factory, one training loop.

- :class:`TrainingOptions` is the family of training settings (steps, batch size, learning
  rate, optimiser, schedule, ...). The ``train`` evaluator's, the supernet evaluator's and the
  DARTS search's option sets extend it, so ``--set evaluator_options.lr=0.05`` means the same
  everywhere.
- :func:`schedule` and :func:`optimizer` turn the options into optax objects (cosine with
  warm-up, SPOS's linear decay, BigNAS's exponential decay with a constant ending, constant).
- :func:`run_training` drives any :class:`Trainable`: batches from :class:`nas.pipeline.Batches`
  (built ahead on worker threads), a rich progress bar with steps/s and the current loss,
  orbax checkpoints every ``checkpoint_every`` steps and on SIGTERM, and resumption from the
  newest checkpoint (:mod:`nas.checkpoint`).
"""

from __future__ import annotations

import math
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from nas.errors import ConfigError, NasError
from nas.options import positive

Schedule = Literal["cosine", "linear", "exponential", "constant"]
OptimizerName = Literal["sgd", "adamw", "rmsprop"]


@dataclass(frozen=True)
class TrainingOptions:
    """Settings every training shares.

    Attributes:
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate.
        optimizer: ``sgd`` (momentum, optionally Nesterov), ``adamw`` or ``rmsprop``.
        momentum: SGD / RMSProp momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 (SGD, RMSProp) or decoupled (AdamW) decay of conv and dense
            kernels; BatchNorm parameters and biases are not decayed.
        schedule: ``cosine`` (to 0 after linear warm-up), ``linear`` (to 0, SPOS),
            ``exponential`` (BigNAS: ``lr * 0.97 ** (step / (steps / 40))``, held once it
            reaches 5% of ``lr``) or ``constant``.
        warmup: linear warm-up steps.
        label_smoothing: on the hard-label loss.
        grad_clip: global gradient-norm clip (0: none).
        checkpoint_every: orbax checkpoint every this many steps (0: only at the end and on
            SIGTERM; a supernet saved in a run folder always checkpoints there).
    """

    steps: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: OptimizerName = "adamw"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: Schedule = "cosine"
    warmup: int = 10
    label_smoothing: float = 0.0
    grad_clip: float = 5.0
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        positive("steps", self.steps)
        positive("batch_size", self.batch_size)
        positive("lr", self.lr)
        positive("weight_decay", self.weight_decay, allow_zero=True)
        positive("warmup", self.warmup, allow_zero=True)
        positive("grad_clip", self.grad_clip, allow_zero=True)
        positive("checkpoint_every", self.checkpoint_every, allow_zero=True)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def schedule(opts: TrainingOptions, steps: int | None = None, lr: float | None = None) -> Any:
    """The learning-rate schedule of ``opts`` over ``steps`` (default ``opts.steps``)."""
    import optax

    steps = max(1, steps or opts.steps)
    peak = opts.lr if lr is None else lr
    warm = min(opts.warmup, steps - 1)
    if opts.schedule == "cosine":
        if warm == 0:
            return optax.cosine_decay_schedule(peak, steps)
        return optax.warmup_cosine_decay_schedule(0.0, peak, warm, steps)
    if opts.schedule == "linear":
        main = optax.linear_schedule(peak, 0.0, steps - warm)
    elif opts.schedule == "exponential":
        every = max(1.0, steps / 40)
        floor = 0.05 * peak

        def main(count: Any) -> Any:
            import jax.numpy as jnp

            return jnp.maximum(peak * 0.97 ** (count / every), floor)
    else:
        main = optax.constant_schedule(peak)
    if warm == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), main], [warm])


def decay_mask(params: Any) -> Any:
    """Decay conv and dense kernels (``ndim > 1``) only, not BatchNorm parameters or biases
    (OFA's ``no_decay_keys='bn#bias'``, BigNAS)."""
    import jax

    return jax.tree.map(lambda p: p.ndim > 1, params)


def optimizer(opts: TrainingOptions, steps: int | None = None, lr: float | None = None) -> Any:
    """The optax optimiser of ``opts`` (clipping, decay, schedule) over ``steps``."""
    return _optimizer(opts, schedule(opts, steps, lr))


def optimizer_given_lr(opts: TrainingOptions) -> Any:
    """``opts``'s optimiser with the learning rate given to every update
    (``tx.update(..., learning_rate=lr)``, ``nnx.Optimizer.update(model, grads,
    learning_rate=lr)``) instead of computed from a schedule inside the compiled step.

    The update is the same function of the learning rate as :func:`optimizer`'s, and its state
    does not depend on it, so a training whose schedule changes (OFA's phases, each with its
    own rate and warm-up) keeps one compiled step: the schedule runs on the host
    (:func:`schedule`, evaluated at the phase's step) and only its value enters the program.
    """
    import optax

    def update(updates: Any, state: Any, params: Any = None, *, learning_rate: Any, **_: Any):
        return _optimizer(opts, learning_rate).update(updates, state, params)

    return optax.GradientTransformationExtraArgs(_optimizer(opts, 1.0).init, update)


def _optimizer(opts: TrainingOptions, lr_fn: Any) -> Any:
    """``opts``'s optimiser at learning rate ``lr_fn`` (a schedule or a number)."""
    import optax

    if opts.optimizer == "adamw":
        core = optax.adamw(lr_fn, weight_decay=opts.weight_decay, mask=decay_mask)
    else:
        if opts.optimizer == "sgd":
            step = optax.sgd(lr_fn, momentum=opts.momentum or None, nesterov=opts.nesterov)
        else:
            step = optax.rmsprop(lr_fn, decay=0.9, eps=1e-3, momentum=opts.momentum)
        core = optax.chain(optax.add_decayed_weights(opts.weight_decay, decay_mask), step)
    if opts.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(opts.grad_clip), core)
    return core


class TrainingInterrupted(NasError):
    """The training received SIGTERM; its state was checkpointed and it stopped."""


class Trainable(ABC):
    """A training that :func:`run_training` can drive, checkpoint and resume.

    Step ``s`` must depend on ``(seed, s)`` and the state only: whatever a step samples
    (a path, subnets, a resolution) it draws from ``np.random.default_rng([seed, s, ...])``.
    """

    def resolution(self, step: int) -> int | None:
        """The input resolution of step ``step`` (``None``: the data's own)."""
        return None

    def restore_structure(self, done: int) -> None:
        """Shape the state as it was after ``done`` steps (a training in phases creates its
        phase's optimiser and teacher here, without the phase's entry actions)."""
        return None  # noqa: B027 -- most trainings have one structure

    @abstractmethod
    def step(self, step: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Train on batch ``(x, y)`` as step ``step``; returns (loss, accuracy in [0, 1])."""

    @abstractmethod
    def leaves(self) -> list[Any]:
        """The whole training state as a flat list of arrays (what a checkpoint saves)."""

    @abstractmethod
    def set_leaves(self, leaves: list[Any]) -> None:
        """Load :meth:`leaves` back."""


def run_training(
    task: Trainable,
    batches: Any,
    steps: int,
    *,
    checkpointer: Any = None,
    progress: bool = True,
    label: str = "training",
    log: Callable[[int, float, float], None] | None = None,
) -> dict[str, float]:
    """Train ``task`` for ``steps`` steps on ``batches`` (:class:`nas.pipeline.Batches`),
    resuming from ``checkpointer``'s newest checkpoint.

    Returns:
        ``train_loss`` and ``train_accuracy`` (%) averaged over the last 20 steps run,
        ``train_seconds``, ``steps`` and ``resumed_from`` (steps already done, 0 if none).

    Raises:
        TrainingInterrupted: SIGTERM arrived; the state after the current step was saved.
    """
    from nas.checkpoint import Termination

    start = 0
    if checkpointer is not None and (done := checkpointer.latest_step()) is not None:
        done = min(done, steps)
        task.restore_structure(done)
        leaves, _ = checkpointer.restore(done, task.leaves())
        task.set_leaves(leaves)
        start = done
    losses: list[float] = []
    accs: list[float] = []
    t0 = time.perf_counter()
    with Termination() as term, progress_bar(label, steps, start, progress) as update:
        for s, x, y in batches.iterate(start, steps, task.resolution):
            loss, acc = task.step(s, x, y)
            losses, accs = (losses + [loss])[-20:], (accs + [acc])[-20:]
            done = s + 1
            update(done, loss)
            if log is not None:
                log(s, loss, acc)
            if checkpointer is not None and (checkpointer.due(done) or term.requested):
                checkpointer.save(done, task.leaves(), {"step": done})
            if term.requested:
                raise TrainingInterrupted(
                    f"{label}: stopped by SIGTERM after step {done}; run again to resume"
                )
        if checkpointer is not None and start < steps:
            checkpointer.save(steps, task.leaves(), {"step": steps})
    return {
        "train_loss": float(np.mean(losses)) if losses else math.nan,
        "train_accuracy": 100.0 * float(np.mean(accs)) if accs else math.nan,
        "train_seconds": time.perf_counter() - t0,
        "steps": steps,
        "resumed_from": start,
    }


@contextmanager
def progress_bar(
    label: str, total: int, start: int = 0, enabled: bool = True
) -> Iterator[Callable[[int, float], None]]:
    """A rich progress bar on stderr with steps/s and the current loss; yields
    ``update(done, loss)``. Disabled, it is a no-op."""
    if not enabled:
        yield lambda done, loss: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class StepsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} steps/s" if speed else "-- steps/s")

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        StepsPerSecond(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=False,
    )
    with bar:
        tid = bar.add_task(label, total=total, completed=start, loss="--")

        def update(done: int, loss: float) -> None:
            bar.update(tid, completed=done, loss=f"{loss:.4f}")

        yield update


__all__ = [
    "Trainable",
    "TrainingInterrupted",
    "TrainingOptions",
    "decay_mask",
    "optimizer",
    "progress_bar",
    "run_training",
    "schedule",
]
