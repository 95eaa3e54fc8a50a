"""Evaluators: train-from-scratch, tabular benchmark, weight-sharing supernet, synthetic.

They are registered in :mod:`nas.registry` (kind ``evaluators``) and built as
``cls(space, dataset, seed=..., data_dir=..., run_dir=..., options=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.evaluators.base import EvalResult, Evaluator
from nas.space import SearchSpace


def get_evaluator(
    name: str,
    space: SearchSpace,
    dataset: str | None = None,
    *,
    seed: int = 0,
    data_dir: str | None = None,
    run_dir: str | Path | None = None,
    **options: Any,
) -> Evaluator:
    """The evaluator registered as ``name``; ``options`` are its own (checked)."""
    from nas import registry

    cls = registry.load("evaluators", name)
    return cls(space, dataset, seed=seed, data_dir=data_dir, run_dir=run_dir, options=options)


__all__ = ["EvalResult", "Evaluator", "get_evaluator"]
