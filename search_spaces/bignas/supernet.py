"""The BigNAS supernet and its single-stage training (sandwich rule, in-place distillation).

The supernet is :class:`~search_spaces.ofa.supernet.ElasticMBNet` over the BigNAS layout
(elastic width, depth, kernel by centre crop, expansion; resolution static per compile).
Training (:func:`train_sandwich`) follows BigNAS:

- **sandwich rule**: every step trains the largest child, the smallest child and
  ``n_random`` random children on the same batch, summing their gradients;
- **in-place distillation**: the largest child learns from the labels (with label
  smoothing), every other child from the largest child's predictions of the same step
  (soft cross-entropy; the teacher's logits are not differentiated);
- **initialisation**: the last BatchNorm of every residual block starts with gamma = 0, so each
  residual block starts as an identity and children of any depth train stably;
- **regularisation**: no weight decay on BN parameters and biases; dropout only on the largest
  child (a traced per-subnet switch, so the step still compiles once).

BigNAS's other choices (exponentially decaying learning rate ending at a constant, RMSProp on
ImageNet) are settings of :class:`~search_spaces.ofa.train.ElasticTrainConfig` and not
reproduced at ImageNet scale here. Children are evaluated directly with inherited weights
(after BN recalibration); no retraining.
"""

from __future__ import annotations

import time
from typing import Any

import jax.numpy as jnp
import numpy as np

from search_spaces.ofa.supernet import ElasticMBNet, encode_arch
from search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer


class BigNASSupernet(ElasticMBNet):
    """The BigNAS elastic supernet of a :class:`~search_spaces.bignas.space.BigNASSpace`."""

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


def train_sandwich(
    model: BigNASSupernet,
    space: Any,
    data: Any,
    config: ElasticTrainConfig,
    n_random: int = 2,
) -> dict[str, Any]:
    """Single-stage BigNAS training for ``config.steps`` sandwich steps."""
    rng = np.random.default_rng(config.seed)
    # the smallest child comes back every step: it gets a program of its own (no conds)
    smallest = model.arch(space.known()["min"], drop=False)
    trainer = ElasticTrainer(model, config, fixed=[smallest])
    n = len(data.x_train)
    bs = min(config.batch_size, n)
    order, pos = rng.permutation(n), 0
    t0 = time.perf_counter()
    loss = acc = float("nan")
    for _ in range(config.steps):
        if pos + bs > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + bs]
        pos += bs
        loss, acc = trainer.step(
            data.x_train[idx],
            data.y_train[idx],
            sandwich_archs(model, space, rng, n_random),
            mode="sandwich",
        )
    return {
        "loss": loss,
        "train_accuracy": 100 * acc,
        "traces": trainer.traces,
        "steps": config.steps,
        "seconds": time.perf_counter() - t0,
    }
