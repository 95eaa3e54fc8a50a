"""Random search."""

from __future__ import annotations

from nas.searchers.base import Searcher
from nas.space import Genotype


class RandomSearch(Searcher):
    """Uniform samples from the space (deduplication is the ``Deduplicated`` wrapper's job)."""

    name = "random"

    def ask(self) -> Genotype:
        return self.space.sample(self.rng)
