"""The search loop: searcher proposes, evaluator scores, Optuna storage records.

Every trial is written to the study before it is evaluated (state RUNNING, with its
architecture), and finished with its metrics, cost, status and timings. The searcher's
state is saved with the study after every ask and tell, so a driver killed at any point is
resumed with ``resume=True``: finished trials stay, interrupted ones are marked and
re-evaluated, and the searcher continues from its saved state.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas import __version__
from nas.errors import ConfigError, NasError, StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace
from nas.storage import TrialRecord, default_storage, open_study, records, set_json_attr


@dataclass
class SearchResult:
    """The outcome of a search."""

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

    def to_json(self) -> dict[str, Any]:
        return {
            "best_arch": self.best_arch,
            "best_metrics": self.best_metrics,
            "best_cost": self.best_cost,
            "best_trial": self.best_trial,
            "n_trials": self.n_trials,
            "n_failed": self.n_failed,
            "study": self.study,
            "storage": self.storage,
            "out_dir": self.out_dir,
            "top": [
                {"trial": r.number, "arch": r.arch, "metrics": r.metrics, "cost": r.cost}
                for r in self.top
            ],
        }


def _evaluate_safely(evaluator: Evaluator, genotype: Genotype, workdir: Path) -> EvalResult:
    """A failed candidate fails its trial, never the search."""
    t0 = time.perf_counter()
    try:
        return evaluator.evaluate(genotype, workdir)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a candidate is recorded
        line = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        (workdir / "error.txt").write_text(traceback.format_exc())
        return EvalResult.failure(line, time.perf_counter() - t0)


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.p = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
        )
        self.task = self.p.add_task("", total=total, completed=done)
        self.p.start()

    def update(self, done: int, failed: int, best: float) -> None:
        if self.enabled:
            self.p.update(
                self.task, completed=done, description=f"failed {failed}  best {best:.2f}%"
            )

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def run_search(
    space: SearchSpace,
    searcher: Searcher,
    evaluator: Evaluator,
    budget: int,
    *,
    out_dir: str | Path,
    storage: str | None = None,
    study_name: str | None = None,
    resume: bool = False,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> SearchResult:
    """Run (or resume) a search until ``budget`` trials have finished.

    Args:
        space: the search space.
        searcher: the strategy (fresh; its state is restored from the study on resume).
        evaluator: scores each genotype.
        budget: number of finished trials (failed ones count) at the end.
        out_dir: run folder (trial files, default SQLite storage).
        storage: any SQLAlchemy URL; default ``sqlite:///<out_dir>/study.db``.
        study_name: default: the run folder's name.
        resume: continue an existing study instead of refusing to touch it.
        settings: search settings recorded with the study (provenance).
        progress: show a progress bar on stderr.
    """
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out)
    study_name = study_name or out.resolve().name
    study = open_study(storage, study_name, create=True, resume=resume)
    settings = {
        **(settings or {}),
        "space": space.name,
        "strategy": searcher.name,
        **evaluator.settings(),
        "platform_version": __version__,
    }
    pending: list[Genotype] = []
    if resume and "settings" in study.user_attrs:
        stored = study.user_attrs["settings"]
        for key in ("space", "strategy", "evaluator", "dataset"):
            if stored.get(key) != settings.get(key):
                raise StorageError(
                    f"cannot resume study {study_name!r}: it was run with {key}="
                    f"{stored.get(key)!r}, not {settings.get(key)!r}"
                )
        if "searcher_state" in study.user_attrs:
            searcher.load_state_dict(study.user_attrs["searcher_state"])
        # Trials left RUNNING by a killed driver: mark them and evaluate them again.
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            if "arch" in t.user_attrs:
                pending.append(space.parse(t.user_attrs["arch"]))
    set_json_attr(study, "settings", settings)

    def counts() -> tuple[int, int, float]:
        recs = [r for r in records(study) if r.state in ("COMPLETE", "FAIL") and not r.interrupted]
        failed = sum(r.state == "FAIL" for r in recs)
        accs = [r.accuracy for r in recs if r.state == "COMPLETE" and math.isfinite(r.accuracy)]
        return len(recs), failed, max(accs, default=float("nan"))

    done, failed, best = counts()
    bar = _Progress(budget, done, progress)
    try:
        while done < budget:
            genotype = pending.pop(0) if pending else searcher.ask()
            trial = study.ask()
            trial.set_user_attr("arch", genotype.to_str())
            trial.set_user_attr("space", space.name)
            set_json_attr(study, "searcher_state", searcher.state_dict())
            workdir = out / "trials" / str(trial.number)
            workdir.mkdir(parents=True, exist_ok=True)
            result = _evaluate_safely(evaluator, genotype, workdir)
            for key, value in (
                ("status", result.status),
                ("metrics", result.metrics),
                ("cost", result.cost),
                ("duration", result.duration),
                ("error", result.error),
                ("artifacts", result.artifacts),
            ):
                trial.set_user_attr(key, value)
            if result.ok:
                study.tell(trial, result.accuracy)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            searcher.tell(genotype, result)
            set_json_attr(study, "searcher_state", searcher.state_dict())
            done += 1
            failed += not result.ok
            if result.ok and not (result.accuracy <= best):
                best = result.accuracy
            bar.update(done, failed, best)
    finally:
        bar.close()
    return summarize(study, storage, out)


def summarize(study: optuna.Study, storage: str, out: Path, top: int = 5) -> SearchResult:
    recs = [r for r in records(study) if not r.interrupted]
    ok = sorted((r for r in recs if r.state == "COMPLETE"), key=lambda r: (-r.accuracy, r.number))
    if not ok:
        raise NasError(
            f"every trial of study {study.study_name!r} failed; see {out}/trials/*/error.txt"
        )
    best = ok[0]
    return SearchResult(
        best_arch=best.arch,
        best_metrics=best.metrics,
        best_cost=best.cost,
        best_trial=best.number,
        n_trials=sum(r.state in ("COMPLETE", "FAIL") for r in recs),
        n_failed=sum(r.state == "FAIL" for r in recs),
        study=study.study_name,
        storage=storage,
        out_dir=str(out),
        top=ok[:top],
    )


def print_summary(result: SearchResult, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file or sys.stdout)
    table = Table(title=f"best architectures of study {result.study}")
    for col in ("trial", "accuracy %", "params", "FLOPs", "architecture"):
        table.add_column(col)
    for r in result.top:
        table.add_row(
            str(r.number),
            f"{r.accuracy:.2f}",
            f"{int(r.cost.get('params', 0)):,}",
            f"{int(r.cost.get('flops', 0)):,}",
            r.arch,
        )
    console.print(table)
    console.print(f"{result.n_trials} trials ({result.n_failed} failed); storage {result.storage}")
