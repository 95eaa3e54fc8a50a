"""The :class:`~nas.supernet.Supernet` protocol for path-indexed supernets (SPOS, NB-Macro).

:class:`PathNet` wraps a :class:`nas.oneshot.PathSupernet` module: a genotype is its path
(one candidate index per choice layer), training is Single Path One-Shot's (one uniformly
random path per step, SGD that leaves off-path candidates untouched, linear decay), BN
calibration is :func:`nas.supernet.cumulative_bn` over the path, and a child is the
IR-built model with the path's weights (:func:`nas.oneshot.extract_model`). A space's
supernet subclasses it and says how to build its module (:meth:`PathNet.build`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nas.oneshot import Mode, PathSupernet, SupernetTrainer, extract_model, reset_bn
from nas.space import Genotype, SearchSpace
from nas.supernet import Supernet, cumulative_bn
from nas.training import Trainable, TrainingOptions

SPOS_TRAINING = TrainingOptions(
    steps=400,
    batch_size=64,
    lr=0.1,
    optimizer="sgd",
    momentum=0.9,
    weight_decay=4e-5,
    schedule="linear",
    warmup=0,
    grad_clip=0.0,
)
"""SPOS's supernet training: SGD, momentum 0.9, L2 4e-5, learning rate decayed linearly."""


@nnx.jit
def _calib_step(model: PathSupernet, x: jax.Array, path: jax.Array, momentum: jax.Array) -> None:
    model(x, path, Mode(True, momentum))


@nnx.jit
def _logits(model: PathSupernet, x: jax.Array, path: jax.Array) -> jax.Array:
    return model(x, path, Mode(False))


@nnx.jit
def _reset(model: PathSupernet) -> None:
    reset_bn(model)


class PathTraining(Trainable):
    """Single Path One-Shot training of a path supernet: step ``s`` trains the path drawn
    from ``default_rng([seed, s, 2])``."""

    def __init__(
        self,
        model: PathSupernet,
        options: TrainingOptions,
        seed: int,
        trainer: SupernetTrainer | None = None,
    ) -> None:
        self.model = model
        self.seed = seed
        self.trainer = trainer or SupernetTrainer(model, options)

    @property
    def traces(self) -> int:
        return self.trainer.traces

    def step(self, step: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        path = self.model.sample_path(np.random.default_rng([self.seed, step, 2]))
        loss, acc = self.trainer.step(x, y, path)
        return float(loss), float(acc)

    def leaves(self) -> list[Any]:
        return jax.tree.leaves(nnx.state((self.model, self.trainer.optimizer)))

    def set_leaves(self, leaves: list[Any]) -> None:
        state = nnx.state((self.model, self.trainer.optimizer))
        nnx.update(
            (self.model, self.trainer.optimizer),
            jax.tree.unflatten(jax.tree.structure(state), leaves),
        )


class PathNet(Supernet):
    """A path supernet under the :class:`~nas.supernet.Supernet` protocol."""

    defaults: ClassVar[TrainingOptions] = SPOS_TRAINING

    def __init__(self, space: SearchSpace, dataset: str, seed: int = 0) -> None:
        super().__init__(space, dataset, seed)
        self.model: PathSupernet = self.build(space, dataset, seed)

    def build(self, space: SearchSpace, dataset: str, seed: int) -> PathSupernet:
        """The freshly initialised supernet module."""
        raise NotImplementedError

    @property
    def channels(self) -> int | None:  # type: ignore[override]
        shape = getattr(self.model, "input_shape", None)
        return int(shape[-1]) if shape else None

    def resolution(self, genotype: Genotype) -> int | None:
        shape = getattr(self.model, "input_shape", None)
        return int(shape[0]) if shape else None

    def encode(self, genotype: Genotype) -> np.ndarray:
        return self.model.path_of(genotype)

    def training(self, options: TrainingOptions, seed: int) -> PathTraining:
        return PathTraining(self.model, options, seed)

    def calibrate(self, genotype: Genotype, batches: Sequence[np.ndarray]) -> None:
        path = jnp.asarray(self.encode(genotype), jnp.int32)
        cumulative_bn(
            lambda: _reset(self.model),
            lambda x, m: _calib_step(self.model, x, path, m),
            batches,
        )

    def logits(self, genotype: Genotype, x: np.ndarray) -> np.ndarray:
        path = jnp.asarray(self.encode(genotype), jnp.int32)
        return np.asarray(_logits(self.model, jnp.asarray(x), path))

    def child(self, genotype: Genotype, graph: Any) -> Any:
        return extract_model(self.model, graph, self.encode(genotype))


__all__ = ["SPOS_TRAINING", "PathNet", "PathTraining"]
