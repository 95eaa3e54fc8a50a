"""What a search leaves behind: its result, the Pareto front, and how they are shown.

"Best" is defined once, in :func:`nas.objectives.best_records`; the summary, ``nas search
--json``, ``result.json``, ``pareto.json``, the report and ``nas export --trial best`` all
use it. Every storage URL shown or written has its password masked.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.objectives import Objective, best_records, values_of
from nas.storage import TrialRecord, TrialStore, mask_url

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The outcome of a search.

    ``best_*`` describe the best trial (the first objective's best; with several objectives,
    the Pareto member best in the first). ``storage`` is the URL as given (the Python API
    needs it to open the study again); every serialised or printed form masks its password.
    """

    best_arch: str
    best_metrics: dict[str, float]
    best_cost: dict[str, float]
    best_trial: int
    n_trials: int
    n_failed: int
    study: str
    storage: str
    out_dir: str
    top: list[TrialRecord] = field(default_factory=list)
    objectives: list[Objective] = field(default_factory=list)
    pareto: list[dict[str, Any]] = field(default_factory=list)

    @property
    def best_values(self) -> dict[str, float]:
        return {o.name: o.value(self.top[0]) for o in self.objectives} if self.top else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "best_arch": self.best_arch,
            "best_metrics": self.best_metrics,
            "best_cost": self.best_cost,
            "best_trial": self.best_trial,
            "best_values": self.best_values,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "study": self.study,
            "storage": mask_url(self.storage),
            "out_dir": self.out_dir,
            "top": [
                {"trial": r.number, "arch": r.arch, "metrics": r.metrics, "cost": r.cost}
                for r in self.top
            ],
            "objectives": [o.to_json() for o in self.objectives],
            "pareto": self.pareto,
        }


def pareto_front(
    recs: list[TrialRecord], objectives: tuple[Objective, ...] | list[Objective]
) -> list[dict[str, Any]]:
    """The completed trials no other completed trial dominates, best first objective first."""
    front = best_records(recs, objectives) if len(objectives) > 1 else []
    return [
        {
            "trial": r.number,
            "arch": r.arch,
            "values": dict(
                zip((o.name for o in objectives), values_of(r, objectives) or [], strict=True)
            ),
            "metrics": r.metrics,
            "cost": r.cost,
        }
        for r in front
    ]


def summarize(
    store: TrialStore, objectives: tuple[Objective, ...], out: Path, top: int = 5
) -> SearchResult:
    """The study's outcome: the best trials by the one definition, and the Pareto front."""
    recs = [r for r in store.records() if not r.interrupted]
    first = objectives[:1]
    ranked = best_records(recs, first)  # the top list: by the first objective
    best = best_records(recs, objectives)[:1] or ranked[:1]
    if not best:
        raise NasError(f"every trial of study {store.name!r} failed; see {out}/trials/*/error.txt")
    b = best[0]
    return SearchResult(
        best_arch=b.arch,
        best_metrics=b.metrics,
        best_cost=b.cost,
        best_trial=b.number,
        n_trials=sum(r.state in ("COMPLETE", "FAIL") for r in recs),
        n_failed=sum(r.state == "FAIL" for r in recs),
        study=store.name,
        storage=store.url,
        out_dir=str(out),
        top=[b, *(r for r in ranked if r.number != b.number)][:top],
        objectives=list(objectives),
        pareto=pareto_front(recs, objectives),
    )


def write_pareto(result: SearchResult, out: Path, store: TrialStore | None = None) -> None:
    """``pareto.json`` (the front) and ``pareto.png`` (every trial, the front highlighted).

    The plot shows the first two objectives; it is skipped, with a logged note, when
    matplotlib is not installed. It draws on its own figure and never changes matplotlib's
    backend.
    """
    objs = result.objectives
    doc = {
        "study": result.study,
        "objectives": [o.to_json() for o in objs],
        "n_trials": result.n_trials,
        "front": result.pareto,
    }
    (out / "pareto.json").write_text(json.dumps(doc, indent=1))
    try:
        import matplotlib  # noqa: F401 - only to know whether it is installed
    except ImportError:
        log.warning("matplotlib is not installed; pareto.png not written")
        return
    points = []
    if store is not None:
        points = [
            v
            for r in store.records()
            if r.state == "COMPLETE" and not r.interrupted and (v := values_of(r, objs))
        ]
    x, y = objs[1], objs[0]  # the second objective across, the first up
    from nas.figures import new_figure

    fig = new_figure((6, 4.2), dpi=110)
    ax = fig.add_subplot()
    if points:
        ax.scatter([p[1] for p in points], [p[0] for p in points], s=12, c="0.7", label="trials")
    fx = [f["values"][x.name] for f in result.pareto]
    fy = [f["values"][y.name] for f in result.pareto]
    order = sorted(range(len(fx)), key=lambda i: fx[i])
    ax.plot(
        [fx[i] for i in order],
        [fy[i] for i in order],
        "o-",
        c="tab:red",
        ms=4,
        drawstyle="steps-post" if x.direction == "minimize" else "default",
        label=f"Pareto front ({len(fx)})",
    )
    ax.set_xlabel(f"{x.name} ({'lower' if x.direction == 'minimize' else 'higher'} is better)")
    ax.set_ylabel(f"{y.name} ({'lower' if y.direction == 'minimize' else 'higher'} is better)")
    if x.name in ("flops", "params") and fx and min(fx) > 0:
        ax.set_xscale("log")
    ax.set_title(f"study {result.study}: {result.n_trials} trials")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "pareto.png")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def print_summary(result: SearchResult, file=None) -> None:
    """The best trials (objectives first, then params and FLOPs) and the Pareto front."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    objs = result.objectives
    table = Table(title=f"best architectures of study {result.study}")
    cols = [o.name for o in objs] + [
        k for k in ("params", "flops") if k not in {o.name for o in objs}
    ]
    for col in ("trial", *cols, "architecture"):
        table.add_column(col)
    for r in result.top:
        cells = [_fmt(r.metrics.get(c, r.cost.get(c))) for c in cols]
        table.add_row(str(r.number), *cells, r.arch)
    console.print(table)
    if len(objs) > 1:
        front = Table(
            title="Pareto front (" + ", ".join(f"{o.name} {o.direction[:3]}" for o in objs) + ")"
        )
        front.add_column("trial")
        for o in objs:
            front.add_column(o.name)
        front.add_column("architecture")
        for f in result.pareto:
            front.add_row(str(f["trial"]), *(_fmt(f["values"][o.name]) for o in objs), f["arch"])
        console.print(front)
    console.print(
        f"{result.n_trials} trials ({result.n_failed} failed); storage {mask_url(result.storage)}"
    )


__all__ = ["SearchResult", "pareto_front", "print_summary", "summarize", "write_pareto"]
