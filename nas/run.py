"""A prepared search run: every setting of a configuration resolved and checked.

:func:`prepare` turns a :class:`~nas.config.SearchConfig` into a :class:`Run` -- space,
evaluator, objectives, strategy class, limits, run folder and storage -- before anything is
written or evaluated, so bad input is one line and exit code 2 before any work starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.config import SearchConfig
from nas.errors import ConfigError
from nas.evaluators.base import Evaluator
from nas.objectives import COST_KEYS, Objective, parse_objectives
from nas.options import build_options
from nas.searchers import build_strategy, check_objectives
from nas.searchers.base import OneShotStrategy, SearchContext, Strategy
from nas.space import Genotype, SearchSpace
from nas.storage import default_storage, mask_url, sqlite_path

log = logging.getLogger(__name__)


@dataclass
class Run:
    """A checked run: everything :func:`run_search` needs, nothing written yet."""

    config: SearchConfig
    space: SearchSpace
    evaluator: Evaluator
    objectives: tuple[Objective, ...]
    strategy: Strategy
    context: SearchContext
    out: Path
    storage: str
    study: str


def prepare(
    config: SearchConfig,
    evaluator: Evaluator | None = None,
    strategy: Strategy | None = None,
) -> Run:
    """Resolve and check every setting of ``config``; raise before any work on bad input.

    ``evaluator`` replaces the registered one (a caller's own, e.g. on in-memory data);
    ``strategy`` is a caller's own (fresh) strategy object instead of ``config.strategy``.
    """
    strategy_cls = type(strategy) if strategy is not None else None
    from nas import registry
    from nas.search_spaces import get_space

    space = get_space(config.space)
    if strategy_cls is None:
        registry.entry("strategies", config.strategy)  # an unknown name fails first
    out = config.run_dir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)[:80]} is a file, not a folder")
    storage = config.storage or default_storage(out)
    study = config.study or out.resolve().name
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise ConfigError(f"--data-dir {config.data_dir[:80]}: no such folder")
    if evaluator is None:
        evaluator = build_evaluator(config, space, out)
    objectives = parse_objectives(config.objectives or None, evaluator.metrics)
    if strategy_cls is None:
        strategy_cls = check_objectives(config.strategy, objectives)
        where = "strategy_options"
        build_options(strategy_cls.Options, config.strategy_options, where)
    elif strategy_cls.max_objectives is not None and len(objectives) > strategy_cls.max_objectives:
        raise ConfigError(
            f"strategy {strategy_cls.name!r} optimises {strategy_cls.max_objectives} objective(s)"
        )
    _check_cost_objectives(space, evaluator, objectives)
    limits = config.limits
    context = SearchContext(
        budget=config.budget,
        limits=limits,
        cost=evaluator.cost,
        run_dir=out,
        dataset=evaluator.dataset,
        data_dir=config.data_dir,
        progress=config.progress,
    )
    if strategy is None:
        strategy = build_strategy(
            config.strategy, space, objectives, config.seed, config.strategy_options, context
        )
    if isinstance(strategy, OneShotStrategy):
        strategy.check(evaluator)
    elif limits:
        check_limits(space, evaluator, limits)
    _check_storage_url(storage, out, create=False)
    _check_out(out)  # the first thing written: the run folder, once every check has passed
    _check_storage_url(storage, out, create=True)
    return Run(config, space, evaluator, objectives, strategy, context, out, storage, study)


def build_evaluator(config: SearchConfig, space: SearchSpace, out: Path) -> Evaluator:
    """The registered evaluator of ``config``, built with its typed options."""
    from nas import registry

    cls = registry.load("evaluators", config.evaluator)
    if not (isinstance(cls, type) and issubclass(cls, Evaluator)):
        raise ConfigError(f"evaluator {config.evaluator!r} is not a nas Evaluator subclass")
    options = dict(config.evaluator_options)
    if config.latency_table is not None:
        options["latency_table"] = config.latency_table
    fields = getattr(cls.Options, "__dataclass_fields__", {})
    if not config.progress and "progress" in fields:  # --no-progress: no training bars either
        options.setdefault("progress", False)
    return cls(
        space,
        config.dataset,
        seed=config.seed,
        data_dir=config.data_dir,
        run_dir=out,
        options=options,
    )


def check_limits(space: SearchSpace, evaluator: Evaluator, limits: dict[str, float]) -> None:
    """Refuse at once a limit the evaluator cannot measure or no architecture can meet."""
    cost = evaluator.cost(_probe(space))
    for key, limit in limits.items():
        if key not in cost:
            raise ConfigError(
                f"--max-{key} needs a {key} model: the {evaluator.name} evaluator on space "
                f"{space.name!r} measures {sorted(cost)}"
                + (" (pass --latency-table)" if key == "latency" else "")
            )
        if space.smallest() is not None and cost[key] > limit:
            raise ConfigError(
                f"impossible limit --max-{key} {_qty(limit)}: the smallest architecture of "
                f"{space.name!r} has {key} {_qty(cost[key])}"
            )


def _probe(space: SearchSpace) -> Genotype:
    return space.smallest() or space.sample(np.random.default_rng(0))


def _check_cost_objectives(
    space: SearchSpace, evaluator: Evaluator, objectives: tuple[Objective, ...]
) -> None:
    """A cost objective (``latency`` & co.) the evaluator cannot count is refused at start."""
    costs = [o.name for o in objectives if o.name in COST_KEYS]
    if not costs:
        return
    measured = evaluator.cost(_probe(space))
    missing = [c for c in costs if c not in measured]
    if missing:
        raise ConfigError(
            f"objective {missing[0]!r} is not measured by the {evaluator.name} evaluator on "
            f"space {space.name!r} (it counts {sorted(measured)})"
            + ("; pass --latency-table" if missing[0] == "latency" else "")
        )


def _check_out(out: Path) -> None:
    """The run folder (and, on resume, its trials folder), created and writable: the path
    policy of :mod:`nas.files` (missing parents only inside the working directory)."""
    from nas.files import output_dir

    output_dir(out, "--out")
    trials = out / "trials"
    if trials.exists() or trials.is_symlink():
        output_dir(trials, "--out (its trials folder)")


def _check_storage_url(url: str, out: Path, create: bool) -> None:
    """A URL SQLAlchemy can parse; a SQLite file's missing folder only inside the run folder
    or the working directory (created there when ``create``, and said so)."""
    try:
        from sqlalchemy.engine import make_url

        make_url(url)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError & co.
        raise ConfigError(f"--storage {mask_url(url)[:80]!r} is not a SQLAlchemy URL") from None
    path = sqlite_path(url)
    if path is None or path.parent.exists():
        return
    parent = path.parent.resolve()
    allowed = [out.resolve(), Path.cwd().resolve()]
    if not any(parent == a or a in parent.parents for a in allowed):
        raise ConfigError(
            f"--storage: the folder {path.parent} does not exist; create it first (nas creates "
            "missing folders only inside the run folder or the working directory)"
        )
    if create:
        parent.mkdir(parents=True, exist_ok=True)
        log.warning("created folder %s for the study's SQLite file", path.parent)


__all__ = ["Run", "build_evaluator", "check_limits", "prepare"]


def _qty(v: float) -> str:
    """A count as people write it: 1,000,000 (not 1e+06); fractions with 6 digits."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.6g}"
