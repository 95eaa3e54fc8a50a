"""The loops that drive a strategy: sample-based (asynchronous ask/tell) and one-shot.

Every trial is written before it is evaluated (state RUNNING, with its architecture and,
when the strategy proposed it, its ``ask_seq``) and finished with its metrics, cost, status,
timings, the oriented values the strategy was told and its ``tell_seq``. The sequence
numbers let a resumed driver rebuild the strategy from its last snapshot plus the asks and
tells stored after it (:meth:`SampleLoop.restore`), so nothing but the trials themselves is
written per trial: the bytes per trial stay flat however long the search runs.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.callbacks import Callback
from nas.errors import StorageError
from nas.evaluators.base import EvalResult
from nas.execution import (
    Completion,
    Executor,
    InProcessExecutor,
    Job,
    evaluate_safely,
    write_error,
)
from nas.objectives import Objective, orient, oriented
from nas.run import Run
from nas.searchers.base import OneShotStrategy, Searcher
from nas.storage import Pending, TrialRecord, TrialStore

log = logging.getLogger(__name__)


def run_one_shot(
    run: Run, store: TrialStore, strategy: OneShotStrategy, cbs: list[Callback]
) -> None:
    """One derivation, one trial (a resumed one-shot run with its trial finished: nothing)."""
    if any(r.finished for r in store.records()):
        return
    store.interrupt_running()
    derived = strategy.derive(run.evaluator)
    pending = store.start(derived.genotype.to_str(), run.space.name)
    workdir = run.out / "trials" / str(pending.number)
    workdir.mkdir(parents=True, exist_ok=True)
    result = evaluate_safely(run.evaluator, derived.genotype, workdir)
    result.metrics = {**result.metrics, **derived.metrics}
    result.artifacts = {**result.artifacts, **derived.artifacts}
    record = finish_trial(store, pending, result, run.objectives, None, {}, workdir)
    for cb in cbs:
        cb.on_trial_complete(record)


def finish_trial(
    store: TrialStore,
    pending: Pending,
    result: EvalResult,
    objectives: tuple[Objective, ...],
    tell_seq: int | None,
    extra: dict[str, Any],
    workdir: Path | None = None,
) -> TrialRecord:
    """Store a trial's outcome; an objective the result lacks fails it. Returns its record."""
    told = orient(result, objectives)
    if result.ok and told is None:
        missing = [o.name for o in objectives if o.value(result) is None]
        result = EvalResult(
            status="failed",
            metrics=result.metrics,
            cost=result.cost,
            duration=result.duration,
            error=f"objective(s) {missing} not measured by the evaluator",
            artifacts=result.artifacts,
        )
        write_error(workdir, result)
    attrs: dict[str, Any] = {
        **result.to_json(),
        "told": None if told is None else list(told),
        **extra,
    }
    if tell_seq is not None:
        attrs["tell_seq"] = tell_seq
    raw = None if told is None else [o.value(result) for o in objectives]
    store.finish(pending, attrs, raw)  # type: ignore[arg-type]
    return TrialRecord(
        number=pending.number,
        state="COMPLETE" if told is not None else "FAIL",
        arch=pending.arch,
        space=pending.space,
        metrics=result.metrics,
        cost=result.cost,
        duration=result.duration,
        error=result.error,
        artifacts=result.artifacts,
        told=attrs["told"],
        tell_seq=tell_seq,
    )


def make_executor(run: Run, executor: Executor | Callable[[], Executor] | None) -> Executor:
    if isinstance(executor, Executor):
        return executor
    if executor is not None:
        return executor()
    config = run.config
    if config.workers == 1 and not config.address:
        return InProcessExecutor(run.evaluator)
    from nas.execution import RayExecutor

    return RayExecutor(
        run.evaluator, config.workers, address=config.address, max_retries=config.max_retries
    )


class SampleLoop:
    """Drives a sample-based strategy: keeps the executor full, tells results as they come.

    Args:
        run: the prepared run.
        store: the open study.
        searcher: the strategy (fresh; restored here from the study on resume).
        executor: an executor (the caller closes it), a factory, or ``None`` (from the run's
            ``workers``/``address``).
        callbacks: told of every finished trial.
    """

    def __init__(
        self,
        run: Run,
        store: TrialStore,
        searcher: Searcher,
        executor: Executor | Callable[[], Executor] | None,
        callbacks: list[Callback],
    ) -> None:
        self.run_ = run
        self.store = store
        self.searcher = searcher
        self.executor = executor
        self.callbacks = callbacks
        self.objs = run.objectives
        self.join = run.config.join
        self.budget = run.config.budget
        self.seq = 0  # the next event's sequence number
        self.snapshot_seq = -1
        self.pending: list[str] = []  # architectures of interrupted trials, evaluated first
        self.driver = f"{socket.gethostname()}:{os.getpid()}"

    # ---------------------------------------------------------------- restoring

    def restore(self) -> None:
        """Rebuild the strategy's state from the study (resume or join)."""
        config = self.run_.config
        if config.resume:
            self.pending = [r.arch for r in self.store.interrupt_running() if r.arch]
        recs = self.store.records()
        if self.join:
            for r in recs:  # a shared study: learn every result stored so far
                if r.finished and r.arch:
                    told = r.told if "told" in r.attrs else self._orient_record(r)
                    self.searcher.tell(self.run_.space.parse(r.arch), _values(told))
            return
        if not config.resume:
            return
        start = -1
        snap = self.store.snapshot() if self.searcher.snapshots else None
        if snap is not None:
            self.searcher.load_state_dict(snap[0])
            start = self.snapshot_seq = snap[1]
        events: list[tuple[int, str, TrialRecord]] = []
        last = start
        for r in recs:
            if r.ask_seq is not None:
                last = max(last, r.ask_seq)
                if r.ask_seq > start:
                    events.append((r.ask_seq, "ask", r))
            if r.tell_seq is not None:
                last = max(last, r.tell_seq)
                if r.tell_seq > start and r.finished:
                    events.append((r.tell_seq, "tell", r))
        events.sort(key=lambda e: e[0])
        for _, kind, r in events:
            if kind == "ask":
                arch = self.searcher.ask().to_str()
                if arch != r.arch:
                    raise StorageError(
                        f"cannot resume study {self.store.name!r}: its strategy no longer "
                        f"proposes what trial {r.number} stored ({r.arch[:60]} vs {arch[:60]}); "
                        "was it run by another version of nas? Start a new study"
                    )
            else:
                self.searcher.tell(self.run_.space.parse(r.arch), _values(r.told))
        self.seq = last + 1

    def _orient_record(self, r: TrialRecord) -> list[float] | None:
        result = EvalResult(
            status="ok" if r.state == "COMPLETE" else "failed", metrics=r.metrics, cost=r.cost
        )
        told = orient(result, self.objs)
        return None if told is None else list(told)

    # ---------------------------------------------------------------- the loop

    def counts(self) -> tuple[int, int, int, float]:
        """Finished, failed, running (all drivers) and the best first objective."""
        finished = failed = running = 0
        best = math.nan
        first = self.objs[0]
        for r in self.store.records():
            if r.interrupted:
                continue
            if r.state == "RUNNING":
                running += 1
            elif r.state in ("COMPLETE", "FAIL"):
                finished += 1
                failed += r.state == "FAIL"
                v = first.value(r) if r.state == "COMPLETE" else None
                if v is not None and (math.isnan(best) or first.sign * v > first.sign * best):
                    best = v
        return finished, failed, running, best

    def run(self) -> None:
        self.restore()
        self.done, self.failed, _, self.best = self.counts()
        self.retried = 0
        runner = make_executor(self.run_, self.executor)
        bar = _Progress(self.budget, self.done, self.run_.config.progress, self.objs[0])
        try:
            while True:
                while self._room(runner):
                    self._submit(runner)
                if runner.running == 0:
                    break
                completions = runner.wait(timeout=1.0)
                for c in completions:
                    self.retried += bool(c.retries)
                    self._finish(c)
                if self.join and completions:
                    self.done, self.failed, _, self.best = self.counts()
                bar.update(self.done, runner.running, self.failed, self.retried, self.best)
        finally:
            bar.close()
            if runner is not self.executor:
                runner.close()

    def _room(self, runner: Executor) -> bool:
        if runner.running >= runner.capacity:
            return False
        if self.join:  # the budget is the study's: count every driver's trials
            finished, _, running, _ = self.counts()
            return finished + running < self.budget
        return self.done + runner.running < self.budget

    def _submit(self, runner: Executor) -> None:
        attrs: dict[str, Any] = {}
        if self.pending:
            genotype = self.run_.space.parse(self.pending.pop(0))
        else:
            genotype = self.searcher.ask()
            if not self.join:  # a shared study's searchers are never replayed
                attrs["ask_seq"] = self.seq
                self.seq += 1
        if self.join:
            attrs["driver"] = self.driver
        pending = self.store.start(genotype.to_str(), self.run_.space.name, **attrs)
        workdir = self.run_.out / "trials" / str(pending.number)
        runner.submit(Job(genotype, workdir, tag=pending))

    def _finish(self, c: Completion) -> None:
        extra: dict[str, Any] = {}
        if c.worker:
            extra["worker"] = c.worker
        if c.retries:
            extra["retries"] = c.retries
            extra["worker_errors"] = c.job.errors
        seq = None if self.join else self.seq
        self.seq += 1
        record = finish_trial(self.store, c.job.tag, c.result, self.objs, seq, extra, c.job.workdir)
        self.searcher.tell(c.job.genotype, _values(record.told))
        if seq is not None:
            self._maybe_snapshot(seq)
        self.done += 1
        self.failed += record.state == "FAIL"
        v = self.objs[0].value(record) if record.state == "COMPLETE" else None
        if v is not None and (
            math.isnan(self.best)
            or oriented([v], self.objs[:1])[0] > oriented([self.best], self.objs[:1])[0]
        ):
            self.best = v
        for cb in self.callbacks:
            cb.on_trial_complete(record)

    def _maybe_snapshot(self, seq: int) -> None:
        """Save the strategy's state when the events since the last snapshot reach a quarter
        of all events (at least 32): amortised, a constant number of bytes per trial."""
        if self.join or not self.searcher.snapshots:
            return
        if seq - self.snapshot_seq >= max(32, (seq + 1) // 4):
            self.store.save_snapshot(self.searcher.state_dict(), seq)
            self.snapshot_seq = seq


def _values(told: list[float] | None) -> tuple[float, ...] | None:
    return None if told is None else tuple(float(x) for x in told)


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
