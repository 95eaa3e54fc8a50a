"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from nas.evaluators.base import EvalResult
from nas.objectives import non_dominated, parse_objectives
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


class RegularizedEvolution(Searcher):
    """Aging evolution: tournament selection, one mutation per child, oldest dies.

    Until ``population_size`` results are in, proposals are random. Then each proposal mutates
    the best of ``sample_size`` members drawn from the population; every result joins the
    population and the oldest member leaves. Failed candidates never join. Asynchronous by
    construction: ``ask`` never waits for outstanding results.

    With several ``objectives`` (for example accuracy and FLOPs) the tournament picks the
    parent at random among the sample's non-dominated members (Pareto tournament selection);
    aging and mutation are unchanged. A result missing an objective never joins.

    Args:
        space: the search space.
        seed: random seed.
        population_size: members alive at once (P).
        sample_size: tournament size (S).
        objective: the metric to maximise.
        objectives: several objective names (``["accuracy", "flops"]``; cost keys are
            minimised); overrides ``objective``.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        population_size: int = 30,
        sample_size: int = 10,
        objective: str = "accuracy",
        objectives: Sequence[str] | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.population_size = population_size
        self.sample_size = sample_size
        self.objective = objective
        self.objectives = parse_objectives(objectives) if objectives else None
        if self.objectives is not None and len(self.objectives) == 1:
            o = self.objectives[0]
            if o.direction == "maximize" and o.name == objective:
                self.objectives = None  # the single-objective algorithm, exactly
        # single objective: (genotype, value); several: (genotype, values oriented so that
        # larger is better)
        self.population: deque[tuple[Genotype, Any]] = deque(maxlen=population_size)
        self.n_asked = 0

    def ask(self) -> Genotype:
        self.n_asked += 1
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        idx = self.rng.choice(
            len(self.population), size=min(self.sample_size, len(self.population)), replace=False
        )
        if self.objectives is None:
            parent = max((self.population[int(i)] for i in idx), key=lambda m: m[1])[0]
        else:
            sample = [self.population[int(i)] for i in idx]
            front = non_dominated([m[1] for m in sample])
            parent = sample[front[int(self.rng.integers(len(front)))]][0]
        return self.space.mutate(parent, self.rng)

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        super().tell(genotype, result)
        if self.objectives is not None:
            values = [o.value(result) for o in self.objectives]
            if result.ok and all(v is not None for v in values):
                oriented = [o.sign * v for o, v in zip(self.objectives, values, strict=True)]  # type: ignore[operator]
                self.population.append((genotype, oriented))
            return
        if result.ok and self.objective in result.metrics:
            self.population.append((genotype, float(result.metrics[self.objective])))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "population": [[g.to_str(), v] for g, v in self.population],  # v: float or list
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self.population = deque(
            (
                (self.space.parse(a), [float(x) for x in v] if isinstance(v, list) else float(v))
                for a, v in state["population"]
            ),
            maxlen=self.population_size,
        )
