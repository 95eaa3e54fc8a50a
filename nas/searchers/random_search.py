"""Random search."""

from __future__ import annotations

from typing import ClassVar

from nas.searchers.base import Searcher
from nas.space import Genotype


class RandomSearch(Searcher):
    """Uniform samples from the space, for any objectives (it never looks at the values).

    Deduplication is the :class:`~nas.searchers.wrappers.Deduplicated` wrapper's job.
    """

    name = "random"
    max_objectives: ClassVar[int | None] = None

    def ask(self) -> Genotype:
        return self.space.sample(self.rng)
