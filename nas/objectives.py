"""Search objectives and Pareto fronts.

An objective names a number an evaluation produces, looked up first in the result's
``metrics`` (``accuracy``, ...) and then in its ``cost`` (``flops``, ``params``,
``latency``), with a direction. Cost keys are minimised, everything else maximised, unless
the name ends in ``:min`` or ``:max``. ``accuracy,flops`` therefore means "maximise accuracy,
minimise multiply-accumulates".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from nas.errors import ConfigError
from nas.evaluators.base import EvalResult

COST_KEYS = ("flops", "params", "latency")
Direction = Literal["maximize", "minimize"]


@dataclass(frozen=True)
class Objective:
    """One optimisation target: a metric or cost key and whether larger is better."""

    name: str
    direction: Direction

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 when smaller is better."""
        return 1.0 if self.direction == "maximize" else -1.0

    def value(self, result: EvalResult | Any) -> float | None:
        """The objective's value in ``result`` (anything with ``metrics`` and ``cost`` dicts,
        such as a stored trial record); ``None`` when absent or not finite."""
        raw = result.metrics.get(self.name, result.cost.get(self.name))
        if raw is None:
            return None
        v = float(raw)
        return v if math.isfinite(v) else None

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "direction": self.direction}


def parse_objectives(spec: str | Sequence[str] | None) -> tuple[Objective, ...]:
    """``"accuracy,flops"`` (or a list of names) -> objectives; default: accuracy alone."""
    if spec is None:
        return (Objective("accuracy", "maximize"),)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not names or any(not n for n in names):
        raise ConfigError(f"--objectives needs comma-separated names, got {spec!r}")
    out: list[Objective] = []
    for n in names:
        name, _, suffix = n.partition(":")
        if suffix and suffix not in ("min", "max"):
            raise ConfigError(f"objective {n!r}: the suffix must be ':min' or ':max'")
        if suffix:
            direction: Direction = "minimize" if suffix == "min" else "maximize"
        else:
            direction = "minimize" if name in COST_KEYS else "maximize"
        out.append(Objective(name, direction))
    seen = [o.name for o in out]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"--objectives names an objective twice: {spec!r}")
    return tuple(out)


def objective_values(result: EvalResult, objectives: Sequence[Objective]) -> list[float] | None:
    """The values of ``objectives`` in ``result``, or ``None`` when any is missing."""
    if not result.ok:
        return None
    values = [o.value(result) for o in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]


def missing_objectives(result: EvalResult, objectives: Sequence[Objective]) -> list[str]:
    return [o.name for o in objectives if o.value(result) is None]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (both in "larger is better" form)."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(
        x > y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (larger is better in every coordinate).

    Equal points do not dominate each other, so duplicates on the front are all kept.
    """
    if len(points) == 0:
        return []
    p = np.asarray(points, dtype=np.float64)
    keep = []
    for i in range(len(p)):
        ge = np.all(p >= p[i], axis=1)
        gt = np.any(p > p[i], axis=1)
        if not np.any(ge & gt):
            keep.append(i)
    return keep


def oriented(values: Sequence[float], objectives: Sequence[Objective]) -> list[float]:
    """Values turned into "larger is better" form."""
    return [o.sign * v for o, v in zip(objectives, values, strict=True)]
