"""Tabular benchmark evaluator: answers from a space's published table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.evaluators.base import EvalResult, Evaluator
from nas.space import Genotype, SearchSpace


class BenchmarkEvaluator(Evaluator):
    """Looks accuracies up in the space's benchmark table (NAS-Bench-201 and friends)."""

    name = "benchmark"

    def __init__(self, space: SearchSpace, dataset: str | None = None, **kwargs: Any) -> None:
        if not space.has_table():
            raise ConfigError(f"space {space.name!r} has no benchmark table; use --evaluator train")
        super().__init__(space, dataset, **kwargs)
        # Fail early (missing file, unknown dataset), not on the first trial.
        space.check_table(self.dataset)

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        t0 = time.perf_counter()
        metrics = self.space.lookup(genotype, self.dataset)
        return EvalResult(
            metrics=metrics, cost=self.cost(genotype), duration=time.perf_counter() - t0
        ).checked()
