"""A synthetic evaluator: a made-up but deterministic score, for tests and overhead measurements.

The accuracy is a fixed function of the architecture string (a hash mapped into 50-95%), the
cost is the space's real parameter and FLOPs count, and each evaluation takes ``steps`` x
``step_seconds`` of wall time (sleeping, so it costs no CPU). Faults can be injected by
architecture: raise, return NaN, or kill the process that evaluates it.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.errors import ConfigError
from nas.evaluators.base import EvalResult, Evaluator
from nas.options import positive
from nas.space import Genotype, SearchSpace


def synthetic_accuracy(arch: str) -> float:
    """50-95%, a pure function of the architecture string."""
    h = int.from_bytes(hashlib.sha256(arch.encode()).digest()[:8], "little")
    return 50.0 + 45.0 * h / 2**64


@dataclass(frozen=True)
class SyntheticOptions:
    """The ``synthetic`` evaluator's options.

    Attributes:
        steps: simulated training steps (each sleeps ``step_seconds``).
        step_seconds: seconds per simulated step.
        cost: count params and FLOPs on the IR (False: the cheapest possible evaluation).
        fail: architectures whose evaluation raises.
        nan: architectures whose accuracy is NaN.
        crash: architectures whose evaluation kills its process (``os._exit``); use only
            where evaluations run in worker processes.
    """

    steps: int = 0
    step_seconds: float = 0.01
    cost: bool = True
    fail: tuple[str, ...] = ()
    nan: tuple[str, ...] = ()
    crash: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.steps <= 1_000_000:
            raise ConfigError(f"--steps must be between 0 and 1,000,000, got {self.steps}")
        positive("step_seconds", self.step_seconds, allow_zero=True)


class SyntheticEvaluator(Evaluator):
    """Scores by hashing the architecture; optional delay and injected faults. Options:
    :class:`SyntheticOptions`."""

    name = "synthetic"
    Options: ClassVar[type] = SyntheticOptions

    def __init__(self, space: SearchSpace, dataset: str | None = None, **kwargs: Any) -> None:
        super().__init__(space, dataset, **kwargs)
        o = self.options
        self.steps = o.steps
        self.step_seconds = o.step_seconds
        self.with_cost = o.cost
        self.fail = frozenset(o.fail)
        self.nan = frozenset(o.nan)
        self.crash = frozenset(o.crash)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "steps": self.steps}

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        t0 = time.perf_counter()
        arch = genotype.to_str()
        if arch in self.crash:
            os._exit(17)
        if self.steps:
            time.sleep(self.steps * self.step_seconds)
        if arch in self.fail:
            raise RuntimeError(f"injected failure for {arch}")
        acc = float("nan") if arch in self.nan else synthetic_accuracy(arch)
        return EvalResult(
            metrics={"accuracy": acc},
            cost=self.cost(genotype) if self.with_cost else {},
            duration=time.perf_counter() - t0,
        ).checked()
