"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.objectives import non_dominated
from nas.options import positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype


@dataclass(frozen=True)
class EvolutionOptions:
    """Regularized evolution's settings.

    Attributes:
        population: members alive at once (P); the first P proposals are random.
        tournament: members drawn for each tournament (S).
    """

    population: int = 30
    tournament: int = 10

    def __post_init__(self) -> None:
        positive("evolution population", self.population)
        positive("evolution tournament", self.tournament)


class RegularizedEvolution(Searcher):
    """Aging evolution: tournament selection, one mutation per child, oldest dies.

    Until ``population`` results are in, proposals are random. Then each proposal mutates
    the best of ``tournament`` members drawn from the population; every result joins the
    population and the oldest member leaves. Failed candidates never join. Asynchronous by
    construction: ``ask`` never waits for outstanding results.

    With one objective the tournament's winner is the member with the largest (oriented)
    value. With several (for example accuracy and FLOPs) the parent is drawn at random among
    the sample's non-dominated members (Pareto tournament selection); aging and mutation are
    unchanged.
    """

    name = "evolution"
    Options: ClassVar[type] = EvolutionOptions
    max_objectives: ClassVar[int | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population: deque[tuple[Genotype, Values]] = deque(maxlen=self.options.population)
        self.n_asked = 0

    def ask(self) -> Genotype:
        self.n_asked += 1
        if len(self.population) < self.options.population:
            return self.space.sample(self.rng)
        size = min(self.options.tournament, len(self.population))
        idx = self.rng.choice(len(self.population), size=size, replace=False)
        sample = [self.population[int(i)] for i in idx]
        if len(self.objectives) == 1:
            parent = max(sample, key=lambda m: m[1][0])[0]
        else:
            front = non_dominated([m[1] for m in sample])
            parent = sample[front[int(self.rng.integers(len(front)))]][0]
        return self.space.mutate(parent, self.rng)

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        if values is not None:
            self.population.append((genotype, tuple(values)))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "population": [[g.to_str(), list(v)] for g, v in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self.population = deque(
            ((self.space.parse(a), tuple(float(x) for x in v)) for a, v in state["population"]),
            maxlen=self.options.population,
        )
