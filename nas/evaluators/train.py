"""Train-from-scratch evaluator: a jitted optax training loop over the IR-built model.

The loop is device-agnostic: the batch is sharded over every local device along a ``data``
mesh axis and the model is replicated, so the same code uses all GPUs or TPUs a user has
(and, in tests, fake CPU devices from
``XLA_FLAGS=--xla_force_host_platform_device_count=2``). One architecture compiles its
training step once; the step count does not change that.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nas.data import Dataset, load_dataset
from nas.errors import ConfigError
from nas.evaluators.base import EvalResult, Evaluator
from nas.graph import ArchGraph
from nas.model import build_model
from nas.options import positive
from nas.space import Genotype, SearchSpace
from nas.weights import save_weights


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        steps: optimiser steps (the budget; fixed per architecture).
        batch_size: global batch, split over the devices.
        lr: peak learning rate of a cosine schedule with linear warm-up.
        weight_decay: decoupled weight decay (AdamW).
        warmup: warm-up steps.
        seed: initialisation and data-order seed.
    """

    steps: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 10
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TrainOptions:
    """The ``train`` evaluator's options (``[evaluator_options]``; ``--steps`` sets ``steps``).

    Attributes:
        steps: optimiser steps per candidate (1 to 10,000,000).
        batch_size: global batch, split over the devices.
        lr: peak learning rate of a cosine schedule with linear warm-up (AdamW).
        weight_decay: decoupled weight decay.
        warmup: warm-up steps.
    """

    steps: int = 100
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 10_000_000:
            raise ConfigError(f"--steps must be between 1 and 10,000,000, got {self.steps}")
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError(f"batch_size must be between 1 and 1,000,000, got {self.batch_size}")
        positive("lr", self.lr)
        positive("weight_decay", self.weight_decay, allow_zero=True)
        positive("warmup", self.warmup, allow_zero=True)


def make_mesh() -> Mesh:
    devices = np.array(jax.devices())
    return Mesh(devices, ("data",))


def _loss(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, logits


class Trainer:
    """Trains one model; exposes how many times its step was traced (compiled)."""

    def __init__(self, model: nnx.Module, config: TrainConfig, mesh: Mesh | None = None):
        self.model = model
        self.config = config
        self.mesh = mesh or make_mesh()
        self.traces = 0
        n_dev = self.mesh.devices.size
        if config.batch_size % n_dev:
            raise ConfigError(f"batch size {config.batch_size} does not split over {n_dev} devices")
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, config.lr, max(1, config.warmup), max(config.steps, config.warmup + 1)
        )
        tx = optax.chain(
            optax.clip_by_global_norm(5.0),
            optax.adamw(schedule, weight_decay=config.weight_decay),
        )
        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        for obj in (self.model, self.optimizer):
            nnx.update(obj, jax.device_put(nnx.state(obj), self.replicated))

        trainer = self

        @nnx.jit
        def train_step(model, optimizer, x, y):
            trainer.traces += 1  # runs only while tracing
            (loss, logits), grads = nnx.value_and_grad(_loss, has_aux=True)(model, x, y)
            optimizer.update(model, grads)
            acc = jnp.mean(jnp.argmax(logits, -1) == y)
            return loss, acc

        @nnx.jit
        def eval_step(model, x, y):
            logits = model(x)
            return jnp.sum(
                jnp.argmax(logits, -1) == y
            ), optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

        self._train_step = train_step
        self._eval_step = eval_step

    def shard(self, x: np.ndarray) -> jax.Array:
        return jax.device_put(x, self.batch_sharding)

    def fit(self, data: Dataset) -> dict[str, float]:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = len(data.x_train)
        bs = min(cfg.batch_size, n - n % self.mesh.devices.size)
        order = rng.permutation(n)
        pos = 0
        self.model.train()
        loss = acc = jnp.nan
        for _ in range(cfg.steps):
            if pos + bs > n:
                order, pos = rng.permutation(n), 0
            idx = order[pos : pos + bs]
            pos += bs
            loss, acc = self._train_step(
                self.model,
                self.optimizer,
                self.shard(data.x_train[idx]),
                self.shard(data.y_train[idx]),
            )
        return {"train_loss": float(loss), "train_accuracy": 100.0 * float(acc)}

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict[str, float]:
        self.model.eval()
        n_dev = self.mesh.devices.size
        correct = total_loss = 0.0
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            pad = (-len(xb)) % n_dev
            if pad:  # pad to a multiple of the device count; padded rows are not counted
                xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
                yb_full = np.concatenate([yb, np.full(pad, -1, yb.dtype)])
            else:
                yb_full = yb
            c, lsum = self._eval_step(self.model, self.shard(xb), self.shard(yb_full))
            correct += float(c)
            if pad:
                logits = None  # padded rows have label -1: never correct; loss below is exact
                del logits
            total_loss += float(lsum)
        self.model.train()
        return {"accuracy": 100.0 * correct / len(x), "val_loss": total_loss / len(x)}


def train_graph(
    graph: ArchGraph, data: Dataset, config: TrainConfig
) -> tuple[nnx.Module, dict[str, float], Trainer]:
    """Build, train and evaluate a model for ``graph``; returns (model, metrics, trainer)."""
    model = build_model(graph, seed=config.seed)
    trainer = Trainer(model, config)
    t0 = time.perf_counter()
    metrics = trainer.fit(data)
    metrics["train_seconds"] = time.perf_counter() - t0
    metrics.update(trainer.evaluate(data.x_val, data.y_val))
    model.eval()
    return model, metrics, trainer


class TrainEvaluator(Evaluator):
    """Trains every candidate from scratch for a fixed number of steps.

    Args:
        space: the search space.
        dataset: ``digits`` (built in) or ``cifar10`` (a local folder).
        seed: initialisation and data order.
        data_dir: the CIFAR-10 folder (else ``$NAS_CIFAR10_DIR``).
        run_dir: unused (trial files go to each evaluation's workdir).
        options: :class:`TrainOptions`.
        data: in-memory arrays (``nas.data.Dataset``) instead of a named dataset.
    """

    name = "train"
    Options: ClassVar[type] = TrainOptions

    def __init__(
        self,
        space: SearchSpace,
        dataset: str | None = None,
        *,
        seed: int = 0,
        data_dir: str | None = None,
        run_dir: str | Path | None = None,
        options: Any = None,
        data: Dataset | None = None,
    ) -> None:
        super().__init__(
            space,
            dataset or (data.name if data is not None else "digits"),
            seed=seed,
            data_dir=data_dir,
            run_dir=run_dir,
            options=options,
        )
        self.config = TrainConfig(**dataclasses.asdict(self.options), seed=seed)
        # Your own arrays: a Dataset whose name selects the space's network variant
        # (``digits`` for 8x8x1, ``cifar10`` for 32x32x3).
        self.data = (
            data
            if data is not None
            else load_dataset(self.dataset, seed=self.config.seed, data_dir=data_dir)
        )

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "train": self.config.to_json()}

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        t0 = time.perf_counter()
        graph = self.space.to_graph(genotype, self.dataset)
        cost = {"params": graph.params(), "flops": graph.flops()}
        model, metrics, _ = train_graph(graph, self.data, self.config)
        artifacts = {}
        finite = all(np.isfinite(v) for v in metrics.values())
        if workdir is not None and finite:
            path = save_weights(
                model,
                Path(workdir) / "weights.safetensors",
                {"arch": genotype.to_str(), "space": self.space.name, "dataset": self.dataset},
            )
            (Path(workdir) / "arch.json").write_text(graph.dumps())
            artifacts = {"weights": str(path), "graph": str(Path(workdir) / "arch.json")}
        return EvalResult(
            metrics=metrics, cost=cost, duration=time.perf_counter() - t0, artifacts=artifacts
        ).checked()
