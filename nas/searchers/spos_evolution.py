"""Single Path One-Shot's evolutionary search (Guo et al. 2020; Megvii ``search.py``).

Generations of ``population_size`` candidates. The first generation is random; every later
one is ``mutation_num`` mutants and ``crossover_num`` crossovers of the ``select_num`` best
candidates evaluated before the generation starts (SPOS's ``keep_top_k``), filled up with random candidates. A
mutant resamples each decision with probability ``mutation_prob``; a crossover takes each
decision from one of two distinct parents at random. No architecture is proposed twice
(SPOS's ``vis_dict``). A candidate that comes back failed -- for example rejected by the
:class:`~nas.searchers.wrappers.Constrained` wrapper for exceeding a FLOPs limit, which plays
the role of SPOS's ``is_legal`` -- does not count towards its generation and is replaced by
another of the same kind; after ``10 x`` a kind's quota of failures (SPOS's ``max_iters``)
the rest of that kind's quota is filled with random candidates.

Works with any space whose genotypes are a fixed list of categorical decisions
(``choices()``). Scores come from ``tell``: the study's (single) objective, oriented so that
larger is better -- with the ``supernet`` evaluator and the default objective, the one-shot
accuracy of each path with inherited weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nas.errors import ConfigError
from nas.options import positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype

KINDS = ("mutation", "crossover", "random")


@dataclass(frozen=True)
class SPOSEvolutionOptions:
    """SPOS evolution's settings (SPOS's own values as defaults).

    Attributes:
        population: candidates per generation (SPOS: 50).
        select_num: parents: the best evaluated candidates (SPOS: top-10).
        mutation_num: mutants per generation (SPOS: 25).
        crossover_num: crossovers per generation (SPOS: 25).
        mutation_prob: per-decision resampling probability of a mutation (SPOS: 0.1).
        max_tries: proposals per ask before giving up on finding an unseen architecture.
    """

    population: int = 50
    select_num: int = 10
    mutation_num: int = 25
    crossover_num: int = 25
    mutation_prob: float = 0.1
    max_tries: int = 1000

    def __post_init__(self) -> None:
        for name in ("population", "select_num", "max_tries"):
            positive(f"spos-evolution {name}", getattr(self, name))
        for name in ("mutation_num", "crossover_num"):
            positive(f"spos-evolution {name}", getattr(self, name), allow_zero=True)
        if self.mutation_num + self.crossover_num > self.population:
            raise ConfigError(
                f"spos-evolution: mutation_num + crossover_num ({self.mutation_num} + "
                f"{self.crossover_num}) must not exceed population ({self.population})"
            )
        if not 0 <= self.mutation_prob <= 1:
            raise ConfigError(
                f"spos-evolution: mutation_prob must be in [0, 1], got {self.mutation_prob}"
            )


class SPOSEvolution(Searcher):
    """SPOS evolution as an ask/tell searcher with JSON-serialisable state.

    Scores are the first objective's oriented values (larger is better). Options:
    :class:`SPOSEvolutionOptions`.
    """

    name = "spos-evolution"
    Options: ClassVar[type] = SPOSEvolutionOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        self.population_size = o.population
        self.select_num = o.select_num
        self.mutation_num = o.mutation_num
        self.crossover_num = o.crossover_num
        self.mutation_prob = o.mutation_prob
        self.max_tries = o.max_tries
        self.sizes = [n for _, n in self.space.choices()]
        self.generation = 0
        self.scores: dict[str, float] = {}  # every successfully evaluated architecture
        self.seen: set[str] = set()  # every architecture ever proposed
        self.kind_of: dict[str, str] = {}  # outstanding proposals of this generation
        self.issued = dict.fromkeys(KINDS, 0)
        self.failed = dict.fromkeys(KINDS, 0)
        self.quota = self._quotas()
        self.parents: list[str] = []  # this generation's parents, fixed when it starts

    # ---------------------------------------------------------------- generations

    def _quotas(self) -> dict[str, int]:
        if self.generation == 0 or not self.scores:
            return {"mutation": 0, "crossover": 0, "random": self.population_size}
        return {
            "mutation": self.mutation_num,
            "crossover": self.crossover_num,
            "random": self.population_size - self.mutation_num - self.crossover_num,
        }

    def _next_generation(self) -> None:
        self.generation += 1
        self.issued = dict.fromkeys(KINDS, 0)
        self.failed = dict.fromkeys(KINDS, 0)
        self.quota = self._quotas()
        self.parents = [a for a, _ in self.top()]

    def top(self, k: int | None = None) -> list[tuple[str, float]]:
        """The best evaluated architectures (SPOS's ``keep_top_k``), best first."""
        ranked = sorted(self.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[: k or self.select_num]

    def _kind(self) -> str | None:
        for kind in KINDS:
            q = self.quota[kind]
            if self.issued[kind] - self.failed[kind] < q:
                if kind != "random" and self.failed[kind] >= 10 * max(q, 1):
                    # SPOS's max_iters: give the rest of this kind's quota to random
                    self.quota["random"] += q - (self.issued[kind] - self.failed[kind])
                    self.quota[kind] = self.issued[kind] - self.failed[kind]
                    continue
                return kind
        return None

    # ---------------------------------------------------------------- operators

    def _indices(self, arch: str) -> list[int]:
        return self.space.to_indices(self.space.parse(arch))

    def _random(self) -> list[int]:
        return [int(self.rng.integers(n)) for n in self.sizes]

    def _mutate(self, parents: list[str]) -> list[int]:
        cand = self._indices(parents[int(self.rng.integers(len(parents)))])
        for i, n in enumerate(self.sizes):
            if self.rng.random() < self.mutation_prob:
                cand[i] = int(self.rng.integers(n))
        return cand

    def _crossover(self, parents: list[str]) -> list[int]:
        if len(parents) < 2:
            return self._mutate(parents)
        i, j = self.rng.choice(len(parents), 2, replace=False)
        a, b = self._indices(parents[int(i)]), self._indices(parents[int(j)])
        return [x if self.rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]

    # ---------------------------------------------------------------- ask / tell

    def ask(self) -> Genotype:
        kind = self._kind()
        if kind is None:  # this generation is fully proposed: breed the next one
            self._next_generation()
            kind = self._kind() or "random"
        parents = self.parents
        if not parents and kind != "random":
            kind = "random"
        g = None
        for _ in range(self.max_tries):
            if kind == "mutation":
                idx = self._mutate(parents)
            elif kind == "crossover":
                idx = self._crossover(parents)
            else:
                idx = self._random()
            g = self.space.from_indices(idx)
            if g.to_str() not in self.seen:
                break
        assert g is not None
        arch = g.to_str()
        self.seen.add(arch)
        self.kind_of[arch] = kind
        self.issued[kind] += 1
        return g

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        arch = genotype.to_str()
        kind = self.kind_of.pop(arch, None)
        if values is not None:
            self.scores[arch] = float(values[0])
        elif kind is not None:
            self.failed[kind] += 1  # not a member: another candidate of its kind replaces it

    # ---------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "generation": self.generation,
            "scores": dict(self.scores),
            "seen": sorted(self.seen),
            "kind_of": dict(self.kind_of),
            "issued": dict(self.issued),
            "failed": dict(self.failed),
            "quota": dict(self.quota),
            "parents": list(self.parents),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generation = int(state["generation"])
        self.scores = {k: float(v) for k, v in state["scores"].items()}
        self.seen = set(state["seen"])
        self.kind_of = dict(state["kind_of"])
        self.issued = {k: int(v) for k, v in state["issued"].items()}
        self.failed = {k: int(v) for k, v in state["failed"].items()}
        self.quota = {k: int(v) for k, v in state["quota"].items()}
        self.parents = list(state["parents"])
