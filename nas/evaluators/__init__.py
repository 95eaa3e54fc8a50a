"""Evaluators: train-from-scratch, tabular benchmark (supernet and predictor ones plug in here)."""

from __future__ import annotations

from typing import Any

from nas.errors import UnknownName
from nas.evaluators.base import EvalResult, Evaluator
from nas.space import SearchSpace

EVALUATORS = ("train", "benchmark", "synthetic", "supernet")


def get_evaluator(
    name: str, space: SearchSpace, dataset: str | None = None, **options: Any
) -> Evaluator:
    """An evaluator by name."""
    if name == "train":
        from nas.evaluators.train import TrainConfig, TrainEvaluator

        cfg = TrainConfig(
            **{k: v for k, v in options.items() if k in TrainConfig.__dataclass_fields__}
        )
        return TrainEvaluator(space, dataset, cfg, data_dir=options.get("data_dir"))
    if name == "benchmark":
        from nas.evaluators.benchmark import BenchmarkEvaluator

        return BenchmarkEvaluator(space, dataset)
    if name == "synthetic":  # hashed scores, --steps x 10 ms each: tests and overhead runs
        from nas.evaluators.synthetic import SyntheticEvaluator

        return SyntheticEvaluator(space, dataset, steps=options.get("steps", 0))
    if name == "supernet":
        from nas.evaluators.oneshot import SupernetEvaluator, SupernetOptions

        known = SupernetOptions.__dataclass_fields__
        given = {k: v for k, v in options.items() if k in known and v is not None}
        if options.get("supernet_path"):
            given["supernet_file"] = str(options["supernet_path"])
        return SupernetEvaluator(
            space, dataset, seed=int(options.get("seed") or 0),
            data_dir=options.get("data_dir"), run_dir=options.get("run_dir"), options=given,
        )  # fmt: skip
    raise UnknownName(f"unknown evaluator {name!r}; choose one of {list(EVALUATORS)}")


__all__ = ["EVALUATORS", "EvalResult", "Evaluator", "get_evaluator"]
