"""Cross-cutting searcher behaviour as wrappers."""

from __future__ import annotations

from typing import Any

from nas.evaluators.base import EvalResult
from nas.searchers.base import Searcher
from nas.space import Genotype


class Deduplicated(Searcher):
    """Skips genotypes already proposed (by genotype equality), up to ``max_tries`` per ask."""

    def __init__(self, inner: Searcher, max_tries: int = 100) -> None:
        super().__init__(inner.space, inner.seed)
        self.inner = inner
        self.name = inner.name
        self.max_tries = max_tries
        self.seen: set[str] = set()

    def ask(self) -> Genotype:
        for _ in range(self.max_tries):
            g = self.inner.ask()
            if g.to_str() not in self.seen:
                self.seen.add(g.to_str())
                return g
            # A duplicate: let the inner searcher learn it is already known.
            self.inner.tell(g, EvalResult.failure("duplicate"))
        self.seen.add(g.to_str())
        return g  # the space is (nearly) exhausted: allow a repeat rather than loop forever

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        self.seen.add(genotype.to_str())
        self.inner.tell(genotype, result)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.seen = set(state["seen"])
