"""Searchers: ask/tell objects with saveable state."""

from __future__ import annotations

from typing import Any

from nas.errors import UnknownName
from nas.searchers.base import Searcher
from nas.searchers.wrappers import Constrained, Deduplicated, parse_quantity
from nas.space import SearchSpace

STRATEGIES = ("random", "evolution", "tpe")


def get_searcher(
    name: str, space: SearchSpace, seed: int = 0, dedup: bool = True, **options: Any
) -> Searcher:
    """A searcher by strategy name, wrapped in :class:`Deduplicated` unless ``dedup=False``."""
    if name == "random":
        from nas.searchers.random_search import RandomSearch

        s: Searcher = RandomSearch(space, seed)
    elif name == "evolution":
        from nas.searchers.evolution import RegularizedEvolution

        s = RegularizedEvolution(space, seed, **options)
    elif name == "tpe":
        from nas.searchers.tpe import OptunaSearcher

        s = OptunaSearcher(space, seed)
    else:
        raise UnknownName(f"unknown strategy {name!r}; choose one of {list(STRATEGIES)}")
    return Deduplicated(s) if dedup else s


__all__ = [
    "STRATEGIES",
    "Constrained",
    "Deduplicated",
    "Searcher",
    "get_searcher",
    "parse_quantity",
]
