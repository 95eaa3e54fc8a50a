"""The search loop: a prepared run, a strategy, evaluators in process or on Ray, the trial store.

:func:`prepare` turns a :class:`~nas.config.SearchConfig` into a :class:`Run` -- space,
evaluator, objectives, strategy class and limits, every setting checked -- before anything is
written or evaluated. :func:`run_search` then opens the study (:class:`~nas.storage.
TrialStore`), holds its lease, and runs the strategy:

- a **sample-based** strategy asynchronously: the executor is kept full (``capacity``
  evaluations in flight), the strategy asked whenever a worker is free, results told in the
  order they complete. Every trial is written before it is evaluated (state RUNNING, with its
  architecture) and finished with its metrics, cost, status, timings and the oriented values
  the strategy was told. A driver killed at any point is resumed with ``resume=True``:
  finished trials stay, interrupted ones are marked and evaluated again, and the strategy is
  rebuilt from its last snapshot plus the asks and tells stored since (so the bytes written
  per trial stay flat);
- a **one-shot** strategy (DARTS) once: it derives a genotype within the hard limits, which
  the evaluator scores and the store keeps as the run's one trial.

Several drivers can share one study (``join=True``, on a server database such as
PostgreSQL): each adds trials until the study holds ``budget`` finished or running ones,
never touches another driver's running trials, and starts its strategy from the results
already in the study (give each driver its own seed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from nas import __version__
from nas.callbacks import Callback, as_callbacks
from nas.config import SearchConfig
from nas.errors import StorageError
from nas.evaluators.base import Evaluator
from nas.execution import Executor
from nas.loop import SampleLoop, run_one_shot
from nas.run import Run, prepare
from nas.searchers.base import OneShotStrategy, Strategy
from nas.storage import TrialRecord, TrialStore, mask_url
from nas.summary import SearchResult, summarize, write_pareto

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the run


def run_search(
    config: SearchConfig,
    *,
    callbacks: Sequence[Callback | Callable[[TrialRecord], Any]] = (),
    evaluator: Evaluator | None = None,
    strategy: Strategy | None = None,
    executor: Executor | Callable[[], Executor] | None = None,
    command: str | None = None,
) -> SearchResult:
    """Run (or resume, or join) the search ``config`` describes until its budget is met.

    Args:
        config: the run configuration.
        callbacks: called for every finished trial (``on_trial_complete``) and at the end.
        evaluator: replaces the registered evaluator (in-memory data and the like).
        strategy: a strategy object of the caller's own instead of ``config.strategy`` (a
            fresh one: it is restored from the study on resume).
        executor: where evaluations run (default: from ``config.workers``/``address``): an
            executor (the caller closes it) or a factory called once the study is open.
        command: the command line to record with the study (its passwords masked).
    """
    run = prepare(config, evaluator, strategy)
    first = run.objectives[0]
    cbs = as_callbacks(callbacks, config, run.out, (first.name, first.direction))
    store = TrialStore.open(
        run.storage,
        run.study,
        create=True,
        resume=config.resume,
        directions=[o.direction for o in run.objectives],
        join=config.join,
    )
    _check_resume(store, config)
    store.acquire_lease(shared=config.join)
    try:
        _record_settings(store, run, command)
        if isinstance(run.strategy, OneShotStrategy):
            run_one_shot(run, store, run.strategy, cbs)
        else:
            SampleLoop(run, store, run.strategy, executor, cbs).run()  # type: ignore[arg-type]
    finally:
        store.release_lease()
    result = summarize(store, run.objectives, run.out)
    if len(run.objectives) > 1:
        write_pareto(result, run.out, store)
    for cb in cbs:
        cb.on_search_end(result)
    return result


def _check_resume(store: TrialStore, config: SearchConfig) -> None:
    stored = store.settings()
    if not (config.resume or config.join) or not stored:
        return
    if "config" not in stored:
        if config.join:
            return
        raise StorageError(
            f"study {store.name!r} was written by an older nas: its trials can be exported "
            "and reported, but only a study of this version can be resumed"
        )
    bad = config.conflicts(stored["config"])
    if bad:
        verb = "join" if config.join else "resume"
        raise StorageError(f"cannot {verb} study {store.name!r}: it was run with {'; '.join(bad)}")


def _record_settings(store: TrialStore, run: Run, command: str | None) -> None:
    if run.config.join and store.settings():
        return  # the first driver's record stands
    config = run.config
    if command is None:
        command = f"nas.api.search({config.space!r}, {config.strategy!r}, {config.evaluator!r}, budget={config.budget})"
    store.set_attr(
        "settings",
        {
            **run.evaluator.settings(),
            "space": config.space,
            "strategy": config.strategy,
            "dataset": run.evaluator.dataset,
            "seed": config.seed,
            "budget": config.budget,
            "objectives": [o.to_json() for o in run.objectives],
            "limits": config.limits,
            "command": mask_url(command),
            "config": config.to_json(masked=True),
            "platform_version": __version__,
        },
    )


__all__ = ["SearchResult", "prepare", "run_search"]
