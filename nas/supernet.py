"""The weight-sharing protocol: what every supernet of the platform does.

A space that has a supernet declares it (``SearchSpace.supernet``, a ``"module:Class"``
target, imported on first use); nothing is found by probing attributes. The class implements
:class:`Supernet`:

- :meth:`~Supernet.encode`: a genotype as the traced arrays the compiled steps take (a path
  of candidate indices, or an elastic subnet's widths, depths and kernels);
- :meth:`~Supernet.training`: the :class:`~nas.training.Trainable` that trains it (uniform
  single paths for SPOS and NAS-Bench-Macro, progressive shrinking for OFA, the sandwich
  rule for BigNAS), driven, checkpointed and resumed by :func:`nas.training.run_training`;
- :meth:`~Supernet.calibrate`: BatchNorm statistics of a genotype's layers recomputed over
  fixed training batches (:func:`cumulative_bn`, the one calibration rule of every family);
- :meth:`~Supernet.logits`: a genotype's outputs with its inherited weights;
- :meth:`~Supernet.child`: the standalone IR-built model of a genotype carrying those
  weights (it computes what the supernet computes on that genotype);
- :meth:`~Supernet.save` / :meth:`~Supernet.restore`: the trained weights (safetensors).

The ``supernet`` evaluator (:mod:`nas.evaluators.oneshot`) owns load-or-train, calibration,
scoring and child export for every such space.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nas.errors import ConfigError
from nas.training import TrainingOptions

if TYPE_CHECKING:
    from nas.space import Genotype, SearchSpace
    from nas.training import Trainable


class Supernet(ABC):
    """A weight-sharing supernet of one space, for one network variant (dataset).

    Args:
        space: the search space.
        dataset: the network variant (input channels, classes) it is built for.
        seed: initialisation seed.

    Attributes:
        defaults: the family's training settings (the paper's optimiser, schedule, ...);
            the evaluator's options override them field by field.
        model: the flax.nnx module holding the weights.
    """

    defaults: ClassVar[TrainingOptions] = TrainingOptions()
    model: Any

    def __init__(self, space: SearchSpace, dataset: str, seed: int = 0) -> None:
        self.space = space
        self.dataset = dataset
        self.seed = seed

    # ------------------------------------------------------------- required

    @abstractmethod
    def encode(self, genotype: Genotype) -> Any:
        """The genotype as the arrays the compiled steps take (a traced argument)."""

    @abstractmethod
    def training(self, options: TrainingOptions, seed: int) -> Trainable:
        """The training of this supernet under ``options`` (batches come from the caller)."""

    @abstractmethod
    def calibrate(self, genotype: Genotype, batches: Sequence[np.ndarray]) -> None:
        """Recompute the BatchNorm statistics of the genotype's layers over ``batches``."""

    @abstractmethod
    def logits(self, genotype: Genotype, x: np.ndarray) -> np.ndarray:
        """The genotype's outputs on ``x`` in evaluation mode, with its inherited weights."""

    @abstractmethod
    def child(self, genotype: Genotype, graph: Any) -> Any:
        """The standalone model of ``graph`` (the genotype's IR) with its inherited weights
        and current BatchNorm statistics."""

    # ------------------------------------------------------------- defaults

    channels: int | None = None
    """Input channels of the network (``None``: the data's own)."""
    augments: ClassVar[bool] = False
    """Whether training augments the data (the dataset's random resized crop and flip)."""
    cost_on_default_dataset: ClassVar[bool] = False
    """Whether costs describe the space's default dataset's network (the one the genotype
    deploys as) rather than the one trained here."""
    train_resolutions: tuple[int, ...] = ()
    """The input resolutions training samples from (empty: the data's stored size)."""

    def resolution(self, genotype: Genotype) -> int | None:
        """The input resolution a genotype runs at (``None``: the data's stored size)."""
        return None

    def save(self, path: str | Path, metadata: dict[str, Any]) -> Path:
        from nas.weights import save_weights

        return save_weights(self.model, path, metadata)

    def restore(self, path: str | Path) -> None:
        from nas.weights import load_weights

        load_weights(self.model, path)


def supernet_class(space: SearchSpace) -> type[Supernet]:
    """The :class:`Supernet` class a space declares; an error naming the spaces that have one
    when it declares none."""
    target = getattr(type(space), "supernet", "") or ""
    if not target:
        from nas import registry

        have = [n for n in registry.names("spaces") if _declares(n)]
        raise ConfigError(
            f"space {space.name!r} has no weight-sharing supernet; the supernet evaluator "
            f"serves {have}"
        )
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Supernet)):
        raise ConfigError(f"space {space.name!r}: {target} is not a nas.supernet.Supernet")
    return cls


def _declares(name: str) -> bool:
    from nas import registry

    try:
        return bool(getattr(registry.load("spaces", name), "supernet", ""))
    except Exception:  # noqa: BLE001 -- a broken plugin is reported when it is used
        return False


def cumulative_bn(
    reset: Callable[[], None],
    forward: Callable[[Any, Any], None],
    batches: Sequence[np.ndarray],
) -> None:
    """The one BatchNorm calibration rule: reset the statistics, then forward each batch
    in training mode with momentum ``1 / (k + 1)`` for batch ``k``, so that the running
    statistics become the plain average over the batches (OFA's
    ``set_running_statistics``, SPOS's recalibration)."""
    import jax.numpy as jnp

    reset()
    for k, x in enumerate(batches):
        forward(jnp.asarray(x), jnp.float32(1.0 / (k + 1)))


def accuracy(
    logits_fn: Callable[[np.ndarray], Any], x: np.ndarray, y: np.ndarray, bs: int
) -> float:
    """Top-1 accuracy (%) of ``logits_fn`` over ``(x, y)`` in batches of ``bs``; the last
    batch is padded to the same shape (one compile), its padding not counted."""
    correct = 0
    for i in range(0, len(x), bs):
        xb = x[i : i + bs]
        n = len(xb)
        if n < bs and len(x) > bs:
            xb = np.concatenate([xb, np.zeros((bs - n,) + xb.shape[1:], xb.dtype)])
        pred = np.argmax(np.asarray(logits_fn(xb))[:n], -1)
        correct += int(np.sum(pred == y[i : i + n]))
    return 100.0 * correct / len(x)


__all__ = ["Supernet", "accuracy", "cumulative_bn", "supernet_class"]
