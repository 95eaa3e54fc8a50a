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
        self.results: dict[str, EvalResult] = {}

    def ask(self) -> Genotype:
        for _ in range(self.max_tries):
            g = self.inner.ask()
            if g.to_str() not in self.seen:
                self.seen.add(g.to_str())
                return g
            # A duplicate: the inner searcher learns the known result (or, while that result
            # is still outstanding, a failure) and proposes again.
            self.inner.tell(g, self.results.get(g.to_str()) or EvalResult.failure("duplicate"))
        self.seen.add(g.to_str())
        return g  # the space is (nearly) exhausted: allow a repeat rather than loop forever

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        self.seen.add(genotype.to_str())
        self.results[genotype.to_str()] = EvalResult(
            status=result.status, metrics=dict(result.metrics), error=result.error
        )
        self.inner.tell(genotype, result)

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "seen": sorted(self.seen),
            "results": {k: [r.status, r.metrics] for k, r in self.results.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.seen = set(state["seen"])
        self.results = {
            k: EvalResult(status=s, metrics=m) for k, (s, m) in state.get("results", {}).items()
        }
