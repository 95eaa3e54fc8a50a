"""The BigNAS supernet and its single-stage training (sandwich rule, in-place distillation).

The supernet is :class:`~nas.search_spaces.ofa.supernet.ElasticMBNet` over the BigNAS layout
(elastic width, depth, kernel by centre crop, expansion; resolution static per compile).
Training (:class:`SandwichTraining`) follows BigNAS:

- **sandwich rule**: every step trains the largest child, the smallest child and
  ``n_random`` random children on the same batch, summing their gradients;
- **in-place distillation**: the largest child learns from the labels (with label
  smoothing), every other child from the largest child's predictions of the same step
  (soft cross-entropy; the teacher's logits are not differentiated);
- **initialisation**: the last BatchNorm of every residual block starts with gamma = 0, so each
  residual block starts as an identity and children of any depth train stably;
- **regularisation**: no weight decay on BN parameters and biases; dropout only on the largest
  child (a traced per-subnet switch, so the step still compiles once).

BigNAS's optimiser (RMSProp, learning rate decayed exponentially to a constant ending) is
:data:`BIGNAS_TRAINING`; a step trains at one resolution drawn from BigNAS's five. Children are evaluated directly with inherited weights
(after BN recalibration); no retraining.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from nas.search_spaces.bignas.space import RESOLUTIONS
from nas.search_spaces.ofa.elastic import ElasticNet, ElasticTraining, elastic_config
from nas.search_spaces.ofa.supernet import ElasticMBNet, encode_arch
from nas.search_spaces.ofa.train import ElasticTrainer

from nas.training import TrainingOptions


class BigNASSupernet(ElasticMBNet):
    """The BigNAS elastic supernet of a :class:`~nas.search_spaces.bignas.space.BigNASSpace`."""

    def __init__(
        self, space: Any, dataset: str = "digits", dw_impl: str | None = None, seed: int = 0
    ):
        self.space_name = space.name
        self.dataset = dataset
        super().__init__(space.layout(dataset), dw_impl, seed)
        li = 0
        for s in self.layout.stages:
            for j in range(s.max_depth):
                if j > 0 or s.first_residual:  # residual blocks start as identities
                    bn = self.blocks[li].pl_bn
                    bn.scale[...] = jnp.zeros_like(bn.scale[...])
                li += 1

    def arch(self, genotype: Any, drop: bool = True) -> dict[str, np.ndarray]:
        out = encode_arch(self.layout, genotype.choice())
        out["drop"] = np.int32(drop)
        return out

    def max_arch_arrays(self) -> dict[str, np.ndarray]:
        out = super().max_arch_arrays()
        out["drop"] = np.int32(1)
        return out


def sandwich_archs(
    model: BigNASSupernet, space: Any, rng: np.random.Generator, n_random: int = 2
) -> list[dict[str, np.ndarray]]:
    """Largest (with dropout), smallest and ``n_random`` random children (no dropout)."""
    known = space.known()
    archs = [model.arch(known["max"], drop=True), model.arch(known["min"], drop=False)]
    archs += [model.arch(space.sample(rng), drop=False) for _ in range(n_random)]
    return archs


BIGNAS_TRAINING = TrainingOptions(
    steps=400,
    batch_size=64,
    lr=0.05,
    optimizer="rmsprop",
    momentum=0.9,
    weight_decay=1e-5,
    schedule="exponential",
    warmup=5,
    label_smoothing=0.1,
    grad_clip=0.0,
)
"""BigNAS's training: RMSProp, learning rate decayed exponentially and then held constant
(``schedule="exponential"``), label smoothing 0.1 on the largest child, no decay of BN
parameters or biases."""


class SandwichTraining(ElasticTraining):
    """BigNAS's single-stage training: step ``s`` trains the largest, the smallest and
    ``n_random`` random children of ``default_rng([seed, s, 2])`` (in-place distillation)."""

    def __init__(
        self, net: ElasticNet, options: TrainingOptions, seed: int, resolutions, n_random=2
    ):
        super().__init__(net, options, seed, resolutions)
        self.n_random = n_random
        smallest = net.model.arch(net.space.known()["min"], drop=False)
        # the smallest child comes back every step: it gets a program of its own (no conds)
        self.trainer = ElasticTrainer(net.model, elastic_config(options, seed), fixed=[smallest])

    def step(self, step: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        rng = np.random.default_rng([self.seed, step, 2])
        archs = sandwich_archs(self.net.model, self.net.space, rng, self.n_random)
        assert self.trainer is not None
        return self.trainer.step(x, y, archs, mode="sandwich")


class BigNASNet(ElasticNet):
    """The BigNAS supernet, trained by the sandwich rule at BigNAS's resolutions."""

    defaults = BIGNAS_TRAINING
    train_resolutions = RESOLUTIONS

    def build(self, space: Any, dataset: str, seed: int) -> ElasticMBNet:
        return BigNASSupernet(space, dataset, seed=seed)

    def training(self, options: TrainingOptions, seed: int) -> SandwichTraining:
        return SandwichTraining(self, options, seed, self.train_resolutions)
