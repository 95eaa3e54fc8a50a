"""GENNAPE's options (:class:`GennapeOptions`), checked when a predictor is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nas.predictors.gennape.model import COST_GLOBALS
from nas.predictors.transfer import PRIORS, TRANSFERS

from nas.errors import ConfigError
from nas.options import positive


@dataclass(frozen=True)
class GennapeOptions:
    """GENNAPE's options (``--option KEY=VALUE``): network sizes, steps, learning rates, loss
    weights, and the compute prior and transfer rule (module docstring)."""

    hidden: int = 32
    layers: int = 3
    embed: int = 32
    heads: int = 4
    head_hidden: int = 32
    fuzzifier: float = 2.0
    scale_free: bool = True
    cost: str = "none"
    pretrain_steps: int = 200
    steps: int = 400
    finetune_steps: int = 150
    batch: int = 128
    lr: float = 2e-3
    finetune_lr: float = 1e-3
    temperature: float = 0.2
    aug_drop: float = 0.1
    aug_noise: float = 0.05
    rank_weight: float = 1.0
    mse_weight: float = 0.5
    head_weight: float = 0.2
    rank_scale: float = 3.0
    predict_batch: int = 64
    prior: str = "flops_depth"
    residual: float = 1.0
    transfer: str = "prior"
    center_rate: float = 0.1

    def __post_init__(self) -> None:
        for k in ("hidden", "layers", "embed", "heads", "head_hidden", "batch", "predict_batch"):
            positive(f"gennape option {k}", getattr(self, k))
        for k in (
            "pretrain_steps",
            "steps",
            "finetune_steps",
            "residual",
            "mse_weight",
            "center_rate",
        ):
            positive(f"gennape option {k}", getattr(self, k), allow_zero=True)
        for k in ("lr", "finetune_lr", "temperature", "rank_scale"):
            positive(f"gennape option {k}", getattr(self, k))
        if self.fuzzifier <= 1.0:
            raise ConfigError(f"gennape option fuzzifier must be > 1, got {self.fuzzifier}")
        if self.center_rate > 1.0:
            raise ConfigError(f"gennape option center_rate must be <= 1, got {self.center_rate}")
        if not 0.0 <= self.aug_drop < 1.0:
            raise ConfigError(f"gennape option aug_drop must be in [0, 1), got {self.aug_drop}")
        _one_of("cost", self.cost, sorted(COST_GLOBALS))
        _one_of("transfer", self.transfer, TRANSFERS)
        _one_of("prior", self.prior, sorted(PRIORS))


def _one_of(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"gennape option {key}={value!r} is not one of {list(choices)}")


DEFAULTS: dict[str, Any] = dataclasses.asdict(GennapeOptions())
"""Every option's default (:class:`GennapeOptions`)."""
