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
from nas.space import Genotype, SearchSpace
from nas.training import Trainable, TrainingOptions
from nas.training import optimizer as make_optimizer
from nas.weights import save_weights


@dataclass(frozen=True)
class TrainOptions(TrainingOptions):
    """The ``train`` evaluator's options (``[evaluator_options]``; ``--steps`` sets ``steps``):
    :class:`nas.training.TrainingOptions` (by default AdamW, cosine schedule with linear
    warm-up, gradient clipping at 5; orbax checkpoints in the trial folder every
    ``checkpoint_every`` steps and on SIGTERM) and a progress bar.

    Attributes:
        progress: show a progress bar (steps/s, loss) while training.
    """

    progress: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 10_000_000:
            raise ConfigError(f"--steps must be between 1 and 10,000,000, got {self.steps}")
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError(f"batch_size must be between 1 and 1,000,000, got {self.batch_size}")
        super().__post_init__()


@dataclass(frozen=True)
class TrainConfig(TrainOptions):
    """Settings of one training run: the options and the seed (initialisation, data order)."""

    seed: int = 0


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
        self.optimizer = nnx.Optimizer(model, make_optimizer(config), wrt=nnx.Param)
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

    def fit(self, data: Dataset, checkpoint_dir: Path | None = None) -> dict[str, float]:
        """``config.steps`` steps on :class:`nas.pipeline.Batches` of ``data``; with
        ``checkpoint_dir``, orbax checkpoints there (every ``checkpoint_every`` steps and on
        SIGTERM) and a restarted run resumes from the newest."""
        from nas.checkpoint import Checkpointer
        from nas.pipeline import Batches
        from nas.training import run_training

        cfg = self.config
        n = len(data.x_train)
        bs = min(cfg.batch_size, n - n % self.mesh.devices.size)
        self.model.train()
        batches = Batches(data.x_train, data.y_train, bs, cfg.seed)
        ckpt = Checkpointer(checkpoint_dir, cfg.checkpoint_every) if checkpoint_dir else None
        try:
            out = run_training(
                _Steps(self), batches, cfg.steps, checkpointer=ckpt, progress=cfg.progress,
                label="training",
            )  # fmt: skip
        finally:
            if ckpt is not None:
                ckpt.close()
        return {"train_loss": out["train_loss"], "train_accuracy": out["train_accuracy"]}

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


class _Steps(Trainable):
    """A :class:`Trainer`'s steps for :func:`nas.training.run_training`."""

    def __init__(self, trainer: Trainer) -> None:
        self.t = trainer

    def step(self, step: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        t = self.t
        loss, acc = t._train_step(t.model, t.optimizer, t.shard(x), t.shard(y))
        return float(loss), float(acc)

    def leaves(self) -> list[Any]:
        return jax.tree.leaves(nnx.state((self.t.model, self.t.optimizer)))

    def set_leaves(self, leaves: list[Any]) -> None:
        parts = (self.t.model, self.t.optimizer)
        treedef = jax.tree.structure(nnx.state(parts))
        state = jax.device_put(jax.tree.unflatten(treedef, leaves), self.t.replicated)
        nnx.update(parts, state)


def train_graph(
    graph: ArchGraph, data: Dataset, config: TrainConfig, checkpoint_dir: Path | None = None
) -> tuple[nnx.Module, dict[str, float], Trainer]:
    """Build, train and evaluate a model for ``graph``; returns (model, metrics, trainer)."""
    model = build_model(graph, seed=config.seed)
    trainer = Trainer(model, config)
    t0 = time.perf_counter()
    metrics = trainer.fit(data, checkpoint_dir)
    metrics["train_seconds"] = time.perf_counter() - t0
    metrics.update(trainer.evaluate(data.x_val, data.y_val))
    model.eval()
    return model, metrics, trainer


class TrainEvaluator(Evaluator):
    """Trains every candidate from scratch for a fixed number of steps.

    Args:
        space: the search space.
        dataset: ``digits`` (built in), ``cifar10`` or ``cifar100`` (local folders). Left
            out, ``data_dir`` is recognised by its layout (:func:`nas.localdata.local_kind`):
            a CIFAR folder the space has a network for trains that network; anything else
            (an image folder, an ``.npz`` file, CIFAR-100 for a space without a CIFAR-100
            network) trains the space's network adapted to the data's input size and classes
            (:func:`nas.imagefolder.retarget` of its CIFAR-10 network, else its default).
        seed: initialisation and data order.
        data_dir: a CIFAR-10/100 python folder (else ``$NAS_CIFAR10_DIR`` /
            ``$NAS_CIFAR100_DIR``), an ``.npz`` file or an image folder.
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
        from nas.localdata import load_local, local_kind

        kind = local_kind(data_dir) if dataset is None and data is None else None
        if kind in ("cifar10", "cifar100") and kind in space.datasets:
            dataset = kind  # the space has a network for it: no retargeting
        self.folder = kind is not None and dataset is None
        if self.folder:
            variant = "cifar10" if "cifar10" in space.datasets else space.default_dataset
            # an image folder's images at the size the network was designed for (CIFAR's 32)
            size = 32 if variant == "cifar10" else 64
            data = load_local(data_dir, seed=seed, image_size=size)
            dataset = variant
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
        out = {**super().settings(), "train": self.config.to_json()}
        if self.folder:
            out.update(
                local_data=str(self.data_dir),
                data_kind=self.data.name,
                input_shape=list(self.data.input_shape),
            )
        return out

    def graph(self, genotype: Genotype) -> ArchGraph:
        """The network trained for ``genotype`` (retargeted to local data's shape and classes)."""
        graph = self.space.to_graph(genotype, self.dataset)
        if self.folder:
            from nas.imagefolder import retarget

            graph = retarget(graph, self.data.input_shape, self.data.num_classes)
        return graph

    def cost(self, genotype: Genotype) -> dict[str, float]:
        g = self.graph(genotype)
        return {"params": g.params(), "flops": g.flops()}

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        t0 = time.perf_counter()
        graph = self.graph(genotype)
        cost = {"params": graph.params(), "flops": graph.flops()}
        ckpt = Path(workdir) / "checkpoints" if workdir is not None else None
        model, metrics, _ = train_graph(graph, self.data, self.config, ckpt)
        if ckpt is not None:
            import shutil

            shutil.rmtree(ckpt, ignore_errors=True)
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
