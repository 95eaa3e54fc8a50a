"""The evaluator protocol and its typed result."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from nas.options import NoOptions, build_options
from nas.space import Genotype, SearchSpace

Status = Literal["ok", "failed"]


@dataclass
class EvalResult:
    """What an evaluation produced. A failed or NaN evaluation is a result, not an exception.

    Attributes:
        status: ``ok`` or ``failed``.
        metrics: ``accuracy`` (percent) and any other measurements.
        cost: ``params``, ``flops`` (multiply-accumulates), possibly ``latency``.
        duration: wall-clock seconds.
        error: one line saying why a failed evaluation failed.
        artifacts: files the evaluation wrote (for example ``weights``), by name.
    """

    status: Status = "ok"
    metrics: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    error: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def accuracy(self) -> float:
        return float(self.metrics.get("accuracy", float("nan")))

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "metrics": self.metrics,
            "cost": self.cost,
            "duration": self.duration,
            "error": self.error,
            "artifacts": self.artifacts,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EvalResult:
        return cls(**d)

    @classmethod
    def failure(cls, error: str, duration: float = 0.0) -> EvalResult:
        return cls(status="failed", error=error, duration=duration)

    def checked(self) -> EvalResult:
        """This result, or a failure when a metric is NaN or infinite."""
        bad = [k for k, v in self.metrics.items() if not math.isfinite(float(v))]
        if self.ok and bad:
            return EvalResult(
                status="failed",
                metrics=self.metrics,
                cost=self.cost,
                duration=self.duration,
                error=f"non-finite metric(s): {bad}",
            )
        return self


class Evaluator(ABC):
    """Scores genotypes of one space on one dataset.

    A registered evaluator (:mod:`nas.registry`, kind ``evaluators``) is built by the search
    from the run configuration as ``cls(space, dataset, seed=..., data_dir=..., run_dir=...,
    options=cls.Options(...))``: its own settings (steps, batch size, learning rate, ...) are
    the frozen dataclass ``Options`` (see :mod:`nas.options`; unknown keys are refused before
    any work starts), ``metrics`` names what it measures and in which direction each is
    better, so that an objective it cannot produce is refused at start.

    Attributes:
        name: the registered name.
        Options: the option dataclass (``[evaluator_options]`` of a run configuration).
        metrics: metric name -> ``maximize`` or ``minimize``; cost keys (``params``, ``flops``,
            ``latency``) come from :meth:`cost` and are always minimised.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    metrics: ClassVar[Mapping[str, str]] = {"accuracy": "maximize"}

    def __init__(
        self,
        space: SearchSpace,
        dataset: str | None = None,
        *,
        seed: int = 0,
        data_dir: str | None = None,
        run_dir: str | Path | None = None,
        options: Any = None,
    ) -> None:
        self.space = space
        self.dataset = space.check_dataset(dataset)
        self.seed = seed
        self.data_dir = data_dir
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.options = build_options(self.Options, options, f"evaluator_options ({self.name})")

    @abstractmethod
    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        """Score ``genotype``; files (weights) go under ``workdir`` when given."""

    def cost(self, genotype: Genotype) -> dict[str, float]:
        g = self.space.to_graph(genotype, self.dataset)
        return {"params": g.params(), "flops": g.flops()}

    def settings(self) -> dict[str, Any]:
        """The evaluator's settings, recorded with the study for provenance and resume."""
        return {"evaluator": self.name, "dataset": self.dataset}
