"""Search objectives, oriented values, the best trials and Pareto fronts.

An objective names a number an evaluation produces, looked up first in the result's
``metrics`` (``accuracy``, ``bits_per_byte``, ...) and then in its ``cost`` (``flops``,
``params``, ``latency``), with a direction. Cost keys are minimised; a metric takes the
direction its evaluator declares (``Evaluator.metrics``: accuracy is maximised, bits per
byte minimised), else it is maximised; a ``:min`` or ``:max`` suffix overrides both.
``accuracy,flops`` therefore means "maximise accuracy, minimise multiply-accumulates".

This module is the one place where metrics become the values strategies see
(:func:`orient`: every value larger-is-better) and where "best" is defined
(:func:`best_records`): the best trial by the first objective, and with several objectives
the Pareto set. The summary, ``--json``, ``nas export --trial best`` and the report all ask
it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def parse_objectives(
    spec: str | Sequence[str] | None, metrics: Mapping[str, str] | None = None
) -> tuple[Objective, ...]:
    """``"accuracy,flops"`` (or a list of names) -> objectives; default: accuracy alone.

    Args:
        spec: comma-separated names (each optionally ``:min`` / ``:max``), or a list.
        metrics: the evaluator's measured metrics and their directions. When given, an
            objective that is neither one of them nor a cost key is refused, and a metric
            without a suffix takes its declared direction.
    """
    if spec is None:
        spec = [next(iter(metrics))] if metrics else ["accuracy"]
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    if not names or any(not n for n in names):
        raise ConfigError(f"--objectives needs comma-separated names, got {spec!r}")
    out: list[Objective] = []
    for n in names:
        name, _, suffix = n.partition(":")
        if suffix and suffix not in ("min", "max"):
            raise ConfigError(f"objective {n!r}: the suffix must be ':min' or ':max'")
        if metrics is not None and name not in metrics and name not in COST_KEYS:
            known = [*metrics, *COST_KEYS]
            raise ConfigError(
                f"objective {name[:40]!r} is not measured by this evaluator; it measures {known}"
            )
        if suffix:
            direction: Direction = "minimize" if suffix == "min" else "maximize"
        elif name in COST_KEYS:
            direction = "minimize"
        else:
            declared = (metrics or {}).get(name, "maximize")
            direction = "minimize" if declared == "minimize" else "maximize"
        out.append(Objective(name, direction))
    seen = [o.name for o in out]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"--objectives names an objective twice: {spec!r}")
    return tuple(out)


def values_of(result: EvalResult | Any, objectives: Sequence[Objective]) -> list[float] | None:
    """The raw values of ``objectives`` in ``result``, or ``None`` when any is missing."""
    values = [o.value(result) for o in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]


def orient(result: EvalResult, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """What a strategy is told: the values, larger-is-better, or ``None`` for a failure."""
    if not result.ok:
        return None
    values = values_of(result, objectives)
    return None if values is None else tuple(oriented(values, objectives))


def missing_objectives(result: EvalResult, objectives: Sequence[Objective]) -> list[str]:
    return [o.name for o in objectives if o.value(result) is None]


def best_records(records: Sequence[Any], objectives: Sequence[Objective]) -> list[Any]:
    """The best finished trials, best first: the one definition of "best".

    Completed trials (``state == "COMPLETE"``, not interrupted) that have every objective,
    sorted by the first objective (ties: the other objectives in order, then the earlier
    trial). With several objectives only the Pareto set is returned, in that order; its first
    member is "the best trial".
    """
    scored = [
        (r, v)
        for r in records
        if r.state == "COMPLETE" and not r.interrupted
        if (v := values_of(r, objectives)) is not None
    ]
    if len(objectives) > 1:
        front = non_dominated([oriented(v, objectives) for _, v in scored])
        scored = [scored[i] for i in front]
    scored.sort(key=lambda rv: ([-x for x in oriented(rv[1], objectives)], rv[0].number))
    return [r for r, _ in scored]


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


def objectives_of(store: Any) -> tuple[Objective, ...]:
    """The objectives a stored study was run with: names from its settings, directions from
    the study itself (a study from before objectives were recorded: accuracy)."""
    directions = store.directions
    names = [
        o["name"] if isinstance(o, dict) else str(o).partition(":")[0]
        for o in store.settings().get("objectives") or []
    ]
    if len(names) != len(directions):
        names = (
            ["accuracy"]
            if directions == ["maximize"]
            else [f"objective{i}" for i in range(len(directions))]
        )
    return tuple(Objective(n, d) for n, d in zip(names, directions, strict=True))  # type: ignore[arg-type]
