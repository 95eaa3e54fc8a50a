"""Searchers: ask/tell objects with saveable state."""

from __future__ import annotations

from typing import Any

from nas.errors import ConfigError, UnknownName
from nas.searchers.base import Searcher
from nas.searchers.wrappers import Constrained, Deduplicated, parse_quantity
from nas.space import SearchSpace

STRATEGIES = (
    "random",
    "evolution",
    "tpe",
    "nsga2",
    "neural-predictor",
    "bananas",
    "spos-evolution",
)
# Gradient-based strategies (one search, one proposal); not part of the ask/tell contract suite.
GRADIENT_STRATEGIES = ("darts",)
# Strategies that take several objectives (``objectives=["accuracy", "flops"]``).
MULTI_OBJECTIVE = ("random", "evolution", "tpe", "nsga2")


def get_searcher(
    name: str, space: SearchSpace, seed: int = 0, dedup: bool = True, **options: Any
) -> Searcher:
    """A searcher by strategy name, wrapped in :class:`Deduplicated` unless ``dedup=False``.

    ``objectives`` (a list of names, see :mod:`nas.objectives`) goes to the strategies that
    optimise several objectives; random search ignores it.
    """
    objectives = options.pop("objectives", None)
    if (
        objectives is not None
        and len(objectives) > 1
        and name in STRATEGIES
        and name not in MULTI_OBJECTIVE
    ):
        raise ConfigError(
            f"strategy {name!r} optimises one objective; for {','.join(objectives)} use one "
            f"of {list(MULTI_OBJECTIVE)}"
        )
    if objectives is not None and name in ("evolution", "tpe", "nsga2"):
        options["objectives"] = list(objectives)
    if name == "random":
        from nas.searchers.random_search import RandomSearch

        s: Searcher = RandomSearch(space, seed)
    elif name == "evolution":
        from nas.searchers.evolution import RegularizedEvolution

        s = RegularizedEvolution(space, seed, **options)
    elif name == "tpe":
        from nas.searchers.tpe import OptunaSearcher

        s = OptunaSearcher(space, seed, **options)
    elif name == "nsga2":
        from nas.searchers.tpe import NSGA2Searcher

        s = NSGA2Searcher(space, seed, **options)
    elif name in ("neural-predictor", "bananas"):
        from nas.searchers.predictor_guided import Bananas, NeuralPredictor

        cls = NeuralPredictor if name == "neural-predictor" else Bananas
        s = cls(space, seed, **options)
    elif name == "spos-evolution":
        from nas.searchers.spos_evolution import SPOSEvolution

        s = SPOSEvolution(space, seed, **options)
    elif name == "darts":
        from nas.searchers.darts import DartsSearcher

        s = DartsSearcher(space, seed, **options)
    else:
        raise UnknownName(
            f"unknown strategy {name!r}; choose one of {list(STRATEGIES + GRADIENT_STRATEGIES)}"
        )
    return Deduplicated(s) if dedup else s


__all__ = [
    "MULTI_OBJECTIVE",
    "STRATEGIES",
    "Constrained",
    "Deduplicated",
    "Searcher",
    "get_searcher",
    "parse_quantity",
]
