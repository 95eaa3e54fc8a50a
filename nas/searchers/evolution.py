"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from typing import Any

from nas.evaluators.base import EvalResult
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


class RegularizedEvolution(Searcher):
    """Aging evolution: tournament selection, one mutation per child, oldest dies.

    Until ``population_size`` results are in, proposals are random. Then each proposal mutates
    the best of ``sample_size`` members drawn from the population; every result joins the
    population and the oldest member leaves. Failed candidates never join. Asynchronous by
    construction: ``ask`` never waits for outstanding results.

    Args:
        space: the search space.
        seed: random seed.
        population_size: members alive at once (P).
        sample_size: tournament size (S).
        objective: the metric to maximise.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int = 30,
        sample_size: int = 10,
        objective: str = "accuracy",
    ) -> None:
        super().__init__(space, seed)
        self.population_size = population_size
        self.sample_size = sample_size
        self.objective = objective
        self.population: deque[tuple[Genotype, float]] = deque(maxlen=population_size)
        self.n_asked = 0

    def ask(self) -> Genotype:
        self.n_asked += 1
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        idx = self.rng.choice(
            len(self.population), size=min(self.sample_size, len(self.population)), replace=False
        )
        parent = max((self.population[int(i)] for i in idx), key=lambda m: m[1])[0]
        return self.space.mutate(parent, self.rng)

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        super().tell(genotype, result)
        if result.ok and self.objective in result.metrics:
            self.population.append((genotype, float(result.metrics[self.objective])))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "population": [[g.to_str(), v] for g, v in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self.population = deque(
            ((self.space.parse(a), float(v)) for a, v in state["population"]),
            maxlen=self.population_size,
        )
