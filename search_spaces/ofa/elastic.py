"""The :class:`~nas.supernet.Supernet` protocol for elastic MobileNets (OFA, BigNAS).

:class:`ElasticNet` wraps an :class:`~nas.search_spaces.ofa.supernet.ElasticMBNet`: a genotype
is its subnet arrays (``model.arch``), BN calibration averages the subnet's exact batch
statistics over fixed training batches at the genotype's resolution, scoring and child
extraction use the genotype's own resolution, and training samples a resolution per step
(OFA and BigNAS train with several: the elastic-resolution choice is then trained, not
scored on the one size it never saw).

:class:`ProgressiveShrinking` is OFA's training as ``train_ofa_net.py`` runs it, one
:class:`~nas.training.Trainable` over all phases: the full network, then elastic kernel,
depth ({3,4}, then {2,3,4}) and expand ({4,6}, then {3,4,6}); each phase has its own SGD
Nesterov optimiser and cosine schedule at OFA's learning rate for it, steps in proportion to
OFA's epochs, the middle channels re-sorted by importance before each expand phase, and
every phase after the first distilled from the frozen full network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import jax
import numpy as np
from flax import nnx
from nas.search_spaces.ofa.supernet import ElasticBN, ElasticMBNet
from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer, _calib_step, _predict

from nas.space import Genotype, SearchSpace
from nas.supernet import Supernet, cumulative_bn
from nas.training import Trainable, TrainingOptions, optimizer_given_lr, schedule

OFA_TRAINING = TrainingOptions(
    steps=600,
    batch_size=64,
    lr=3e-2,
    optimizer="sgd",
    momentum=0.9,
    nesterov=True,
    weight_decay=3e-5,
    schedule="cosine",
    warmup=0,
    label_smoothing=0.1,
    grad_clip=0.0,
)
"""OFA's ``train_ofa_net.py``: SGD Nesterov 0.9, L2 3e-5 (not on BN or biases), label
smoothing 0.1, cosine per phase; ``lr`` is the kernel phase's (3e-2), the others scale with
it (:data:`OFA_PHASES`)."""


@dataclass(frozen=True)
class Phase:
    """One progressive-shrinking phase.

    Attributes:
        name: OFA's task and phase.
        ks, e, d: the choices sampled from.
        subnets: subnets per step (OFA's ``dynamic_batch_size``).
        lr: OFA's ``base_lr`` of the phase.
        epochs: OFA's ``n_epochs`` (steps are split in proportion).
        warmup_epochs: OFA's warm-up epochs.
        sort: re-sort the middle channels before the phase (OFA's expand tasks).
    """

    name: str
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    subnets: int
    lr: float
    epochs: int
    warmup_epochs: int = 0
    sort: bool = False

    @property
    def distill(self) -> bool:
        return self.name != "full"


OFA_PHASES = (
    Phase("full", (7,), (6,), (4,), 1, 3e-2, 120, 5),
    Phase("kernel", (3, 5, 7), (6,), (4,), 1, 3e-2, 120, 5),
    Phase("depth-1", (3, 5, 7), (6,), (3, 4), 2, 2.5e-3, 25),
    Phase("depth-2", (3, 5, 7), (6,), (2, 3, 4), 2, 7.5e-3, 120, 5),
    Phase("expand-1", (3, 5, 7), (4, 6), (2, 3, 4), 4, 2.5e-3, 25, 0, True),
    Phase("expand-2", (3, 5, 7), (3, 4, 6), (2, 3, 4), 4, 7.5e-3, 120, 5, True),
)
"""OFA-MobileNetV3's schedule (``train_ofa_net.py``: task, phase, choices, dynamic batch
size, ``base_lr``, ``n_epochs``, warm-up). The full network is OFA's separately trained
teacher; here it is the first phase, at the kernel phase's learning rate."""


def phase_steps(phases: Sequence[Phase], steps: int) -> list[int]:
    """Steps per phase, in proportion to the phases' epochs, each at least one, summing to
    ``steps`` (when there are at least as many steps as phases)."""
    total = sum(p.epochs for p in phases)
    out = [max(1, round(steps * p.epochs / total)) for p in phases]
    while sum(out) != steps:
        if sum(out) > steps:
            i = max(range(len(out)), key=lambda k: out[k])
            if out[i] == 1:
                break
            out[i] -= 1
        else:
            out[max(range(len(out)), key=lambda k: phases[k].epochs)] += 1
    return out


class ElasticNet(Supernet):
    """An elastic MobileNet supernet under the :class:`~nas.supernet.Supernet` protocol.

    Attributes:
        train_resolutions: the resolutions training samples from (one per step).
    """

    augments: ClassVar[bool] = True
    cost_on_default_dataset: ClassVar[bool] = True
    train_resolutions: tuple[int, ...] = ()

    def __init__(self, space: SearchSpace, dataset: str, seed: int = 0) -> None:
        super().__init__(space, dataset, seed)
        self.model: ElasticMBNet = self.build(space, dataset, seed)

    def build(self, space: SearchSpace, dataset: str, seed: int) -> ElasticMBNet:
        raise NotImplementedError

    @property
    def channels(self) -> int:  # type: ignore[override]
        return self.model.layout.in_channels

    def resolution(self, genotype: Genotype) -> int:
        return int(genotype.resolution)  # type: ignore[attr-defined]

    def encode(self, genotype: Genotype) -> dict[str, np.ndarray]:
        return self.model.arch(genotype)  # type: ignore[attr-defined]

    def calibrate(self, genotype: Genotype, batches: Sequence[np.ndarray]) -> None:
        model, arch = self.model, self.encode(genotype)
        saved = [m.momentum[...] for _, m in nnx.iter_modules(model) if isinstance(m, ElasticBN)]
        model.train()
        cumulative_bn(lambda: None, lambda x, m: _calib_step(model, x, arch, m), batches)
        bns = [m for _, m in nnx.iter_modules(model) if isinstance(m, ElasticBN)]
        for bn, mom in zip(bns, saved, strict=True):
            bn.momentum[...] = mom

    def logits(self, genotype: Genotype, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        try:
            return np.asarray(_predict(self.model, jax.numpy.asarray(x), self.encode(genotype)))
        finally:
            self.model.train()

    def child(self, genotype: Genotype, graph: Any) -> Any:
        from nas.search_spaces.ofa.child import child_model

        return child_model(self.model, graph)


class ElasticTraining(Trainable):
    """Shared by the elastic trainings: a resolution per step, state = model + optimiser
    (+ the distillation teacher once there is one)."""

    def __init__(
        self, net: ElasticNet, options: TrainingOptions, seed: int, resolutions: Sequence[int]
    ) -> None:
        self.net, self.model = net, net.model
        self.options = options
        self.seed = seed
        self.resolutions = tuple(resolutions)
        self.trainer: ElasticTrainer | None = None
        self.teacher: ElasticMBNet | None = None

    def resolution(self, step: int) -> int | None:
        if not self.resolutions:
            return None
        return int(np.random.default_rng([self.seed, step, 3]).choice(self.resolutions))

    def _parts(self) -> tuple[Any, ...]:
        assert self.trainer is not None
        parts = (self.model, self.trainer.optimizer)
        return parts if self.teacher is None else (*parts, self.teacher)

    def leaves(self) -> list[Any]:
        return jax.tree.leaves(nnx.state(self._parts()))

    def set_leaves(self, leaves: list[Any]) -> None:
        parts = self._parts()
        state = nnx.state(parts)
        nnx.update(parts, jax.tree.unflatten(jax.tree.structure(state), leaves))

    @property
    def traces(self) -> int:
        return self.trainer.traces if self.trainer is not None else 0


def elastic_config(options: TrainingOptions, seed: int) -> ElasticTrainConfig:
    """The :class:`ElasticTrainConfig` of a family's options."""
    fields = {f: getattr(options, f) for f in TrainingOptions.__dataclass_fields__}
    return ElasticTrainConfig(**fields, seed=seed)


class ProgressiveShrinking(ElasticTraining):
    """OFA's progressive shrinking (:data:`OFA_PHASES`) as one resumable training."""

    def __init__(
        self,
        net: ElasticNet,
        options: TrainingOptions,
        seed: int,
        resolutions: Sequence[int],
        phases: Sequence[Phase] = OFA_PHASES,
    ) -> None:
        super().__init__(net, options, seed, resolutions)
        self.phases = tuple(phases)
        self.lengths = phase_steps(self.phases, options.steps)
        self.starts = [sum(self.lengths[:i]) for i in range(len(self.phases))]
        self.current = -1
        self.summary: list[dict[str, Any]] = []
        self.lr_at: Any = None

    def phase_of(self, step: int) -> int:
        return max(i for i, s in enumerate(self.starts) if s <= step)

    def _setup(self, index: int, entry: bool) -> None:
        """Phase ``index``'s learning-rate schedule (and teacher); ``entry``: also its entry
        actions (channel sorting, a fresh optimiser, freezing the teacher). Every phase
        trains with the one compiled step: the schedule is evaluated on the host and its
        value passed in (:func:`nas.training.optimizer_given_lr`)."""
        phase = self.phases[index]
        if entry and phase.sort:
            self.model.reorganize_channels()
        if phase.distill and self.teacher is None:
            self.teacher = nnx.clone(self.model)  # after a restore, overwritten by it
            self.teacher.eval()
        length = self.lengths[index]
        warm = round(length * phase.warmup_epochs / phase.epochs)
        opts = replace(self.options, warmup=warm)
        lr = self.options.lr * phase.lr / OFA_PHASES[1].lr
        self.lr_at = schedule(opts, steps=length, lr=lr)
        if self.trainer is None:
            cfg = elastic_config(self.options, self.seed)
            self.trainer = ElasticTrainer(self.model, cfg, tx=optimizer_given_lr(self.options))
        elif entry:
            self.trainer.reset_optimizer()
        self.current = index

    def restore_structure(self, done: int) -> None:
        if done > 0:
            self._setup(self.phase_of(done - 1), entry=False)

    def step(self, step: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        index = self.phase_of(step)
        if index != self.current:
            self._setup(index, entry=True)
        assert self.trainer is not None
        phase = self.phases[index]
        rng = np.random.default_rng([self.seed, step, 2])
        space = self.net.space
        archs = [self.model.arch(sample_phase(phase, space, rng)) for _ in range(phase.subnets)]
        return self.trainer.step(
            x,
            y,
            archs,
            mode="kd" if phase.distill else "plain",
            teacher=self.teacher if phase.distill else None,
            lr=self.lr_at(step - self.starts[index]),
        )


OFA_RESOLUTIONS = (128, 160, 192, 224)
"""The resolutions OFA trains with (``train_ofa_net.py``: ``image_size = 128,160,192,224``)."""


class OFANet(ElasticNet):
    """The OFA-MobileNetV3 supernet, trained by progressive shrinking."""

    defaults: ClassVar[TrainingOptions] = OFA_TRAINING
    train_resolutions = OFA_RESOLUTIONS

    def build(self, space: SearchSpace, dataset: str, seed: int) -> ElasticMBNet:
        from nas.search_spaces.ofa.supernet import OFASupernet

        return OFASupernet(space, dataset, seed=seed)

    def training(self, options: TrainingOptions, seed: int) -> ProgressiveShrinking:
        return ProgressiveShrinking(self, options, seed, self.train_resolutions)


def sample_phase(phase: Phase, space: Any, rng: np.random.Generator, resolution: int = 224):
    """A random genotype of ``space`` restricted to the phase's choices."""
    from nas.search_spaces.ofa.network import N_UNITS

    n = space.genotype_cls.n_layers
    return space.genotype_cls(
        tuple(int(rng.choice(phase.ks)) for _ in range(n)),
        tuple(int(rng.choice(phase.e)) for _ in range(n)),
        tuple(int(rng.choice(phase.d)) for _ in range(N_UNITS)),
        resolution,
    )


__all__ = [
    "OFA_PHASES",
    "OFA_RESOLUTIONS",
    "OFA_TRAINING",
    "ElasticNet",
    "ElasticTraining",
    "OFANet",
    "Phase",
    "ProgressiveShrinking",
    "elastic_config",
    "phase_steps",
    "sample_phase",
]
