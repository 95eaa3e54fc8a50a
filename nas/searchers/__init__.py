"""Search strategies: sample-based (ask/tell) and one-shot, found through :mod:`nas.registry`.

:func:`build_strategy` is the one place a strategy is made for a run: it loads the class
registered under the name, refuses objectives it cannot optimise (naming the strategies
that can), builds it with its typed options, and wraps a sample-based one in the
cross-cutting wrappers (:class:`Deduplicated`, :class:`Constrained` for hard limits).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nas import registry
from nas.errors import ConfigError
from nas.objectives import Objective
from nas.searchers.base import OneShotStrategy, SearchContext, Searcher, Strategy
from nas.searchers.wrappers import Constrained, Deduplicated, parse_quantity
from nas.space import SearchSpace


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as strategy ``name`` (checked to be a strategy)."""
    cls = registry.load("strategies", name)
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ConfigError(
            f"strategy {name!r} ({registry.entry('strategies', name).target}) is not a "
            "nas.searchers.base.Searcher or OneShotStrategy subclass"
        )
    return cls


def strategies_for(n_objectives: int) -> list[str]:
    """The registered strategies that optimise ``n_objectives`` objectives."""
    out = []
    for name in registry.names("strategies"):
        limit = strategy_class(name).max_objectives
        if limit is None or n_objectives <= limit:
            out.append(name)
    return out


def check_objectives(name: str, objectives: Sequence[Objective]) -> type[Strategy]:
    """The strategy's class, or a :class:`ConfigError` if it cannot take ``objectives``."""
    cls = strategy_class(name)
    limit = cls.max_objectives
    if limit is not None and len(objectives) > limit:
        names = ",".join(o.name for o in objectives)
        raise ConfigError(
            f"strategy {name!r} optimises {limit} objective{'s' if limit > 1 else ''}; for "
            f"{names} use one of {strategies_for(len(objectives))}"
        )
    return cls


def build_strategy(
    name: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    context: SearchContext | None = None,
    dedup: bool = True,
) -> Strategy:
    """The strategy ``name`` for a run, ready to use.

    A sample-based strategy comes wrapped: :class:`Deduplicated` (unless ``dedup=False``)
    and, when ``context.limits`` is set, :class:`Constrained` on ``context.cost``. A one-shot
    strategy gets the limits through its context and enforces them itself.
    """
    cls = check_objectives(name, objectives)
    context = context or SearchContext()
    strategy = cls(space, objectives, seed=seed, options=options, context=context)
    if isinstance(strategy, Searcher):
        if dedup:
            strategy = Deduplicated(strategy)
        if context.limits:
            if context.cost is None:
                raise ConfigError("hard limits need a cost function")
            strategy = Constrained(strategy, context.cost, dict(context.limits))
    return strategy


__all__ = [
    "Constrained",
    "Deduplicated",
    "OneShotStrategy",
    "SearchContext",
    "Searcher",
    "Strategy",
    "build_strategy",
    "check_objectives",
    "parse_quantity",
    "strategies_for",
    "strategy_class",
]
