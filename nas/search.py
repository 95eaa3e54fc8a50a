"""The search loop: searcher proposes, evaluators score (in process or on Ray), storage records.

Every trial is written to the study before it is evaluated (state RUNNING, with its
architecture), and finished with its metrics, cost, status and timings. The searcher's
state is saved with the study after every ask and tell, so a driver killed at any point is
resumed with ``resume=True``: finished trials stay, interrupted ones (several, when several
workers were busy) are marked and evaluated again, and the searcher continues from its
saved state.

The loop is asynchronous: it keeps the executor full (``capacity`` evaluations in flight),
asks the searcher for a new architecture whenever a worker is free, and tells results in
the order they complete. With one in-process worker this is the sequential ask, evaluate,
tell loop.

Several drivers can share one study (``join=True``, on a server database such as
PostgreSQL): each adds trials until the study holds ``budget`` finished or running ones,
never touches another driver's running trials, and starts its searcher from the results
already in the study (give each driver its own seed). A joined driver's searcher state is
not stored; resuming (``resume=True``) is for a study no other driver is running.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from nas import __version__
from nas.errors import ConfigError, NasError, StorageError
from nas.evaluators.base import EvalResult, Evaluator
from nas.execution import Completion, Executor, InProcessExecutor, Job, evaluate_safely
from nas.objectives import Objective, non_dominated, oriented, parse_objectives
from nas.searchers.base import Searcher
from nas.space import SearchSpace
from nas.storage import (
    TrialRecord,
    default_storage,
    open_study,
    records,
    set_json_attr,
    set_trial_user_attrs,
)

_evaluate_safely = evaluate_safely  # the name older code imported


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
    objectives: list[Objective] = field(default_factory=list)
    pareto: list[dict[str, Any]] = field(default_factory=list)

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
            "objectives": [o.to_json() for o in self.objectives],
            "pareto": self.pareto,
        }


class _Progress:
    """Finished of budget, running, failed, retried, best so far (rich, on stderr)."""

    def __init__(self, total: int, done: int, enabled: bool, objective: Objective) -> None:
        self.enabled = enabled
        self.objective = objective
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

    def update(self, done: int, running: int, failed: int, retried: int, best: float) -> None:
        if self.enabled:
            text = f"running {running}  failed {failed}"
            if retried:
                text += f"  retried {retried}"
            text += f"  best {self.objective.name} {best:,.4g}"
            self.p.update(self.task, completed=done, description=text)

    def close(self) -> None:
        if self.enabled:
            self.p.stop()


def _result_of(record: TrialRecord) -> EvalResult:
    return EvalResult(
        status="ok" if record.state == "COMPLETE" else "failed",
        metrics=dict(record.metrics),
        cost=dict(record.cost),
        duration=record.duration,
        error=record.error,
    )


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
    objectives: Sequence[str | Objective] | str | None = None,
    executor: Executor | Callable[[], Executor] | None = None,
    join: bool = False,
) -> SearchResult:
    """Run (or resume, or join) a search until ``budget`` trials have finished.

    Args:
        space: the search space.
        searcher: the strategy (fresh; its state is restored from the study on resume).
        evaluator: scores each genotype (in this process unless ``executor`` is given).
        budget: number of finished trials (failed ones count) at the end.
        out_dir: run folder (trial files, default SQLite storage, ``pareto.json``).
        storage: any SQLAlchemy URL; default ``sqlite:///<out_dir>/study.db``.
        study_name: default: the run folder's name.
        resume: continue an existing study instead of refusing to touch it.
        settings: search settings recorded with the study (provenance).
        progress: show a progress bar on stderr.
        objectives: what to optimise (default accuracy); with several, the study has one
            direction per objective and the result carries the Pareto front.
        executor: where evaluations run (default: in this process, one at a time): an
            executor (the caller closes it) or a factory called once the study is open
            (then closed here).
        join: add trials to a study other drivers may be running (created if missing).
    """
    if budget < 1:
        raise ConfigError(f"--budget must be at least 1, got {budget}")
    if resume and join:
        raise ConfigError("--join already continues a shared study; drop --resume")
    objs = _as_objectives(objectives)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out)
    study_name = study_name or out.resolve().name
    study = open_study(
        storage,
        study_name,
        create=True,
        resume=resume,
        directions=[o.direction for o in objs],
        join=join,
    )
    settings = {
        **(settings or {}),
        "space": space.name,
        "strategy": searcher.name,
        **evaluator.settings(),
        "objectives": [o.name for o in objs],
        "platform_version": __version__,
    }
    pending: list[str] = []  # architectures of interrupted trials, evaluated first
    stored = study.user_attrs.get("settings")
    if (resume or join) and stored:
        for key in ("space", "strategy", "evaluator", "dataset", "objectives"):
            if key in stored and stored.get(key) != settings.get(key):
                raise StorageError(
                    f"cannot {'join' if join else 'resume'} study {study_name!r}: it was run "
                    f"with {key}={stored.get(key)!r}, not {settings.get(key)!r}"
                )
    told: list[int] = []  # trials whose results the searcher has, saved with its state
    if resume and "searcher_state" in study.user_attrs:
        saved = dict(study.user_attrs["searcher_state"])
        told_before = saved.pop("trials_told", None)
        searcher.load_state_dict(saved)
        if told_before is not None:
            # A driver killed between storing a result and saving the searcher's state
            # leaves a finished trial the saved state never heard of: tell it now.
            told = [int(n) for n in told_before]
            known = set(told)
            for r in records(study):
                finished = r.state in ("COMPLETE", "FAIL") and not r.interrupted
                if finished and r.arch and r.number not in known:
                    searcher.tell(space.parse(r.arch), _result_of(r))
                    told.append(r.number)
    elif resume or join:
        # No saved state (a shared study): the searcher starts from the stored results.
        for r in records(study):
            if r.state in ("COMPLETE", "FAIL") and r.arch and not r.interrupted:
                searcher.tell(space.parse(r.arch), _result_of(r))
                told.append(r.number)
    if resume:
        # Trials left RUNNING by a killed driver: mark them and evaluate them again.
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            if "arch" in t.user_attrs:
                pending.append(t.user_attrs["arch"])
    if not join or stored is None:
        set_json_attr(study, "settings", settings)
    driver = f"{socket.gethostname()}:{os.getpid()}"

    def save_state() -> None:
        if not join:
            set_json_attr(study, "searcher_state", {**searcher.state_dict(), "trials_told": told})

    def study_counts() -> tuple[int, int, int, float]:
        """Finished, failed, running (all drivers) and the best first objective."""
        finished = failed = running = 0
        values = []
        for r in records(study):
            if r.interrupted:
                continue
            if r.state == "RUNNING":
                running += 1
            elif r.state in ("COMPLETE", "FAIL"):
                finished += 1
                failed += r.state == "FAIL"
                v = objs[0].value(r) if r.state == "COMPLETE" else None
                if v is not None:
                    values.append(v)
        best = (max if objs[0].direction == "maximize" else min)(values, default=math.nan)
        return finished, failed, running, best

    done, failed, _, best = study_counts()
    retried = 0
    if executor is None:
        runner: Executor = InProcessExecutor(evaluator)
    elif isinstance(executor, Executor):
        runner = executor
    else:
        runner = executor()
    bar = _Progress(budget, done, progress, objs[0])

    def room() -> bool:
        if runner.running >= runner.capacity:
            return False
        if join:  # the budget is the study's: count every driver's trials
            finished, _, running, _ = study_counts()
            return finished + running < budget
        return done + runner.running < budget

    def finish(c: Completion) -> None:
        nonlocal done, failed, best
        trial: optuna.trial.Trial = c.job.tag
        result = c.result
        values = None
        if result.ok:
            values = [o.value(result) for o in objs]
            missing = [o.name for o, v in zip(objs, values, strict=True) if v is None]
            if missing:
                result = EvalResult(
                    status="failed",
                    metrics=result.metrics,
                    cost=result.cost,
                    duration=result.duration,
                    error=f"objective(s) {missing} not measured by the evaluator",
                    artifacts=result.artifacts,
                )
        attrs: dict[str, Any] = {
            "status": result.status,
            "metrics": result.metrics,
            "cost": result.cost,
            "duration": result.duration,
            "error": result.error,
            "artifacts": result.artifacts,
        }
        if c.worker:
            attrs["worker"] = c.worker
        if c.retries:
            attrs["retries"] = c.retries
            attrs["worker_errors"] = c.job.errors
        set_trial_user_attrs(study, trial._trial_id, attrs)
        if result.ok:
            study.tell(trial, values)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        searcher.tell(c.job.genotype, result)
        told.append(trial.number)
        save_state()
        done += 1
        failed += not result.ok
        v = objs[0].value(result) if result.ok else None
        if v is not None and not (oriented([v], objs[:1])[0] <= oriented([best], objs[:1])[0]):
            best = v

    try:
        while True:
            while room():
                arch = pending.pop(0) if pending else None
                genotype = space.parse(arch) if arch is not None else searcher.ask()
                trial = study.ask()
                attrs = {"arch": genotype.to_str(), "space": space.name}
                if join:
                    attrs["driver"] = driver
                set_trial_user_attrs(study, trial._trial_id, attrs)
                save_state()
                workdir = out / "trials" / str(trial.number)
                runner.submit(Job(genotype, workdir, tag=trial))
            if runner.running == 0:
                break
            completions = runner.wait(timeout=1.0)
            for c in completions:
                retried += bool(c.retries)
                finish(c)
            if join and completions:
                done, failed, _, best = study_counts()
            bar.update(done, runner.running, failed, retried, best)
    finally:
        bar.close()
        if runner is not executor:
            runner.close()
    result = summarize(study, storage, out, objectives=objs)
    if len(objs) > 1:
        write_pareto(result, out, study)
    return result


def _as_objectives(objectives: Sequence[str | Objective] | str | None) -> tuple[Objective, ...]:
    if objectives is None or isinstance(objectives, str):
        return parse_objectives(objectives)
    if all(isinstance(o, Objective) for o in objectives):
        return tuple(objectives)  # type: ignore[arg-type]
    return parse_objectives([str(o) for o in objectives])


def _values(r: TrialRecord, objs: Sequence[Objective]) -> list[float] | None:
    values = [o.value(r) for o in objs]
    return None if any(v is None for v in values) else values  # type: ignore[return-value]


def pareto_front(
    recs: Sequence[TrialRecord], objectives: Sequence[Objective]
) -> list[dict[str, Any]]:
    """The completed trials no other completed trial dominates, best first objective first."""
    scored = [
        (r, v)
        for r in recs
        if r.state == "COMPLETE" and not r.interrupted and (v := _values(r, objectives))
    ]
    front = [scored[i] for i in non_dominated([oriented(v, objectives) for _, v in scored])]
    front.sort(key=lambda rv: (-oriented(rv[1], objectives)[0], rv[0].number))
    return [
        {
            "trial": r.number,
            "arch": r.arch,
            "values": {o.name: x for o, x in zip(objectives, v, strict=True)},
            "metrics": r.metrics,
            "cost": r.cost,
        }
        for r, v in front
    ]


def summarize(
    study: optuna.Study,
    storage: str,
    out: Path,
    top: int = 5,
    objectives: Sequence[Objective] | None = None,
) -> SearchResult:
    """The study's outcome: best trials by the first objective, and the Pareto front."""
    objs = tuple(objectives or parse_objectives(None))
    recs = [r for r in records(study) if not r.interrupted]
    first = objs[0]
    ok = sorted(
        (r for r in recs if r.state == "COMPLETE" and first.value(r) is not None),
        key=lambda r: (-first.sign * first.value(r), r.number),  # type: ignore[operator]
    )
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
        objectives=list(objs),
        pareto=pareto_front(recs, objs),
    )


def write_pareto(result: SearchResult, out: Path, study: optuna.Study | None = None) -> None:
    """``pareto.json`` (the front) and ``pareto.png`` (every trial, the front highlighted).

    The plot shows the first two objectives; it is skipped, with a note on stderr, when
    matplotlib is not installed.
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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("nas: matplotlib is not installed; pareto.png not written", file=sys.stderr)
        return
    points = []
    if study is not None:
        points = [
            v
            for r in records(study)
            if r.state == "COMPLETE" and not r.interrupted and (v := _values(r, objs))
        ]
    x, y = objs[1], objs[0]  # cost on the x axis, accuracy (first objective) up
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
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
    plt.close(fig)


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


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
    if len(result.objectives) > 1:
        front = Table(
            title="Pareto front ("
            + ", ".join(f"{o.name} {o.direction[:3]}" for o in result.objectives)
            + ")"
        )
        front.add_column("trial")
        for o in result.objectives:
            front.add_column(o.name)
        front.add_column("architecture")
        for f in result.pareto:
            front.add_row(
                str(f["trial"]),
                *(_fmt(f["values"][o.name]) for o in result.objectives),
                f["arch"],
            )
        console.print(front)
    console.print(f"{result.n_trials} trials ({result.n_failed} failed); storage {result.storage}")
