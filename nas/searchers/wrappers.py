"""Cross-cutting searcher behaviour as wrappers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.searchers.base import Searcher, Values, rng_from_state, rng_state
from nas.space import Genotype


class _Wrapper(Searcher):
    """A searcher around another: same space, objectives, seed, name and restore mode."""

    def __init__(self, inner: Searcher) -> None:
        super().__init__(inner.space, inner.objectives, inner.seed, context=inner.context)
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.snapshots = inner.snapshots  # type: ignore[misc]

    @property
    def innermost(self) -> Searcher:
        """The wrapped strategy itself."""
        return self.inner.innermost if isinstance(self.inner, _Wrapper) else self.inner


class Deduplicated(_Wrapper):
    """Skips genotypes already proposed (by genotype equality), up to ``max_tries`` per ask."""

    def __init__(self, inner: Searcher, max_tries: int = 100) -> None:
        super().__init__(inner)
        self.max_tries = max_tries
        # Its own stream (not the inner searcher's), for the random fallback below.
        self.rng = np.random.default_rng([int(inner.seed or 0), 0xDED])
        self.seen: set[str] = set()
        self.results: dict[str, Values | None] = {}
        self.fallbacks = 0  # asks answered by a random unseen genotype

    def ask(self) -> Genotype:
        for _ in range(self.max_tries):
            g = self.inner.ask()
            if g.to_str() not in self.seen:
                self.seen.add(g.to_str())
                return g
            # A duplicate: the inner searcher learns the known values (or, while that result
            # is still outstanding, a failure) and proposes again.
            self.inner.tell(g, self.results.get(g.to_str()))
        # The inner searcher keeps proposing known genotypes (a converged population): an
        # unseen random one explores instead of spending an evaluation on a repeat.
        for _ in range(self.max_tries):
            fresh = self.space.sample(self.rng)
            if fresh.to_str() not in self.seen:
                self.seen.add(fresh.to_str())
                self.fallbacks += 1
                return fresh
        self.seen.add(g.to_str())
        return g  # the space is (nearly) exhausted: allow a repeat rather than loop forever

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        self.seen.add(genotype.to_str())
        self.results[genotype.to_str()] = None if values is None else tuple(values)
        self.inner.tell(genotype, values)

    def state_dict(self) -> dict[str, Any]:
        return {
            "inner": self.inner.state_dict(),
            "rng": rng_state(self.rng),
            "fallbacks": self.fallbacks,
            "seen": sorted(self.seen),
            "results": {k: None if v is None else list(v) for k, v in self.results.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.rng = rng_from_state(state["rng"])
        self.fallbacks = int(state["fallbacks"])
        self.seen = set(state["seen"])
        self.results = {
            k: None if v is None else tuple(float(x) for x in v)
            for k, v in state["results"].items()
        }


class Constrained(_Wrapper):
    """Proposes only genotypes whose cost is within hard limits (for example max FLOPs).

    Rejected proposals are told back to the inner searcher as failures (so evolution never
    breeds from them) and never reach an evaluator. A limit no architecture meets is an error.

    Args:
        inner: the searcher to filter.
        cost_fn: genotype -> cost dict (``params``, ``flops``, possibly ``latency``).
        limits: cost key -> maximum allowed value.
        max_tries: proposals tried per ask before the constraint is called impossible.
    """

    def __init__(
        self,
        inner: Searcher,
        cost_fn: Callable[[Genotype], dict[str, float]],
        limits: dict[str, float],
        max_tries: int = 2000,
    ) -> None:
        super().__init__(inner)
        self.cost_fn = cost_fn
        self.limits = dict(limits)
        self.max_tries = max_tries
        self.rejected = 0

    def violations(self, genotype: Genotype) -> list[str]:
        cost = self.cost_fn(genotype)
        return [f"{k} {cost[k]:,.0f} > {v:,.0f}" for k, v in self.limits.items() if cost[k] > v]

    def ask(self) -> Genotype:
        smallest: dict[str, float] = {}
        for _ in range(self.max_tries):
            g = self.inner.ask()
            bad = self.violations(g)
            if not bad:
                return g
            self.rejected += 1
            cost = self.cost_fn(g)
            for k in self.limits:
                smallest[k] = min(smallest.get(k, float("inf")), cost[k])
            self.inner.tell(g, None)  # rejected: a failure to the inner searcher
        seen = ", ".join(f"smallest {k} seen {v:,.0f}" for k, v in smallest.items())
        raise ConfigError(
            f"impossible constraint {self.limits}: none of {self.max_tries} proposals met it ({seen})"
        )

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        self.inner.tell(genotype, values)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "rejected": self.rejected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state["inner"])
        self.rejected = int(state["rejected"])


_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_quantity(text: str) -> float:
    """``600M`` -> 6e8; plain numbers pass through."""
    t = str(text).strip().lower()
    try:
        if t and t[-1] in _SUFFIX:
            return float(t[:-1]) * _SUFFIX[t[-1]]
        return float(t)
    except ValueError:
        raise ConfigError(f"not a quantity: {text!r} (use e.g. 600M, 3.5M, 2e9)") from None
