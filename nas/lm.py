"""Training and scoring byte-level language models on a :class:`~nas.corpus.TextCorpus`.

Training draws random windows of ``T + 1`` bytes from the training split (the model reads
``T``, predicts the next byte at every position); the optimiser is AdamW with a linear
warm-up and a cosine decay, gradients clipped at norm 1. Scoring is **bits per byte** on
the validation split: the first ``eval_bytes`` bytes cut into non-overlapping windows of
``T + 1``, every byte of a window after the first predicted from the bytes before it in
its window, mean cross-entropy in nats divided by ln 2. The same windows serve every
candidate, so scores are comparable within a corpus (its fingerprint) and window length.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nas.corpus import TextCorpus
from nas.errors import ConfigError
from nas.options import positive

LN2 = math.log(2.0)


@dataclass(frozen=True)
class LMConfig:
    """Language-model training and scoring settings.

    Attributes:
        steps: optimiser steps.
        batch_size: windows per step.
        lr: peak learning rate (AdamW).
        warmup: linear warm-up steps (then cosine decay to 10% of ``lr``).
        weight_decay: AdamW decoupled weight decay.
        eval_bytes: validation bytes scored (0: the whole validation split).
        eval_batch_size: windows per scoring batch.
        seed: initialisation and window order.
    """

    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    weight_decay: float = 0.01
    eval_bytes: int = 65536
    eval_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        positive("steps", self.steps)
        positive("batch_size", self.batch_size)
        positive("lr", self.lr)
        positive("warmup", self.warmup, allow_zero=True)
        positive("weight_decay", self.weight_decay, allow_zero=True)
        positive("eval_bytes", self.eval_bytes, allow_zero=True)
        positive("eval_batch_size", self.eval_batch_size)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def optimizer(cfg: LMConfig) -> optax.GradientTransformation:
    """AdamW, linear warm-up then cosine decay to 10% of the peak, clipped gradients."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, max(cfg.warmup, 1), max(cfg.steps, cfg.warmup + 1), end_value=cfg.lr / 10
    )
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=cfg.weight_decay)
    )


class Windows:
    """Random training windows of a byte array, deterministic given the seed."""

    def __init__(self, data: np.ndarray, seq: int, batch: int, seed: int) -> None:
        if data.size < seq + 2:
            raise ConfigError(f"{data.size} training bytes cannot fill a window of {seq + 1}")
        self.data, self.seq, self.batch = data, seq, batch
        self.rng = np.random.default_rng(seed)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: int32 ``[batch, seq]`` inputs and their next bytes."""
        starts = self.rng.integers(0, self.data.size - self.seq - 1, self.batch)
        rows = self.data[starts[:, None] + np.arange(self.seq + 1)].astype(np.int32)
        return rows[:, :-1], rows[:, 1:]


def eval_windows(data: np.ndarray, seq: int, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping validation windows ``(x, y)`` over the first ``limit`` bytes."""
    data = data[:limit] if limit else data
    n = (data.size - 1) // (seq + 1)
    if n < 1:
        raise ConfigError(f"{data.size} validation bytes cannot fill a window of {seq + 1}")
    rows = data[: n * (seq + 1)].reshape(n, seq + 1).astype(np.int32)
    return rows[:, :-1], rows[:, 1:]


def nats(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Mean next-byte cross-entropy in nats."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def bits_per_byte(
    logits_fn: Callable[[jax.Array], jax.Array], x: np.ndarray, y: np.ndarray, batch: int
) -> float:
    """Bits per byte of ``logits_fn`` (a compiled ``[B, T] -> [B, T, V]``) over windows.

    The last batch is padded to the batch size (one compiled shape) and its padding left
    out of the mean.
    """
    total, count = 0.0, 0
    for i in range(0, len(x), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        real = len(xb)
        if real < batch:
            xb = np.concatenate([xb, np.repeat(xb[:1], batch - real, 0)])
        logits = logits_fn(jnp.asarray(xb))[:real]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(yb))
        total += float(ce.sum())
        count += yb.size
    return total / count / LN2


def seq_len(model: nnx.Module) -> int:
    """The window length a graph-built token model reads (its input shape)."""
    graph = model.graph()
    shape = graph.shape(graph.input)
    if len(shape) != 1 or graph.attrs(graph.input)["dtype"] != "int32":
        raise ConfigError(f"not a token model: its input is {shape}, not (T,) token ids")
    return shape[0]


def train_model(
    model: nnx.Module,
    corpus: TextCorpus,
    cfg: LMConfig,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train a graph-built token model (:class:`nas.model.GraphModel`) in place.

    Returns:
        ``train_loss`` (bits per byte, mean of the last 10% of steps) and ``train_seconds``.
    """
    t = seq_len(model)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optimizer(cfg)
    opt_state = tx.init(params)

    def loss_fn(p, x, y):
        return nats(nnx.merge(graphdef, p, rest)(x), y)

    @jax.jit
    def step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    windows = Windows(corpus.train, t, cfg.batch_size, cfg.seed)
    losses = []
    t0 = time.perf_counter()
    for i in range(cfg.steps):
        x, y = windows.next()
        params, opt_state, loss = step(params, opt_state, jnp.asarray(x), jnp.asarray(y))
        losses.append(loss)
        if progress is not None:
            progress(i, float(loss) / LN2)
    nnx.update(model, params)
    tail = [float(v) for v in losses[-max(1, cfg.steps // 10) :]]
    return {"train_loss": float(np.mean(tail)) / LN2, "train_seconds": time.perf_counter() - t0}


def score_model(model: nnx.Module, corpus: TextCorpus, cfg: LMConfig) -> float:
    """Bits per byte of a graph-built token model on the validation windows."""
    t = seq_len(model)
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    x, y = eval_windows(corpus.val, t, cfg.eval_bytes)
    return bits_per_byte(lambda xb: fn(state, xb), x, y, cfg.eval_batch_size)


@contextlib.contextmanager
def progress_bar(
    total: int, label: str, enabled: bool = True
) -> Iterator[Callable[[int, float], None] | None]:
    """A rich progress bar on stderr for a training of ``total`` steps: yields the callback
    ``tick(step, bits_per_byte)`` (``None`` when disabled), which shows steps per second
    and the current loss."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(stderr=True),
    )
    task = bar.add_task("", total=total)
    t0 = time.perf_counter()

    def tick(step: int, loss: float) -> None:
        rate = (step + 1) / max(time.perf_counter() - t0, 1e-9)
        bar.update(
            task, completed=step + 1, description=f"{rate:.2f} steps/s  {loss:.3f} bits/byte"
        )

    with bar:
        yield tick
