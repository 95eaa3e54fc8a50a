"""OFA's specialisation: an accuracy predictor, then evolution on it under the limits.

Once-for-All does not score every candidate of its search on the supernet: it measures a
sample of subnets with inherited weights, fits an accuracy predictor (an MLP on the one-hot
encoding of kernel, expand, depth and resolution), and runs evolution against the predictor
under the latency table, which costs microseconds per candidate. This strategy does the same
inside the ask/tell loop:

1. the first ``samples`` proposals are random genotypes within the run's limits; the
   supernet evaluator scores them and ``tell`` brings their values back;
2. the predictor is fitted on them (three hidden layers of ``hidden`` units, as OFA's);
3. evolution on the predictor (OFA's ``EvolutionFinder``: population, parent ratio,
   mutation ratio, per-gene mutation probability; every child resampled until it fits the
   limits, priced by ``context.cost``, i.e. the latency table where there is one);
4. the later proposals are the best predicted candidates not yet scored, in order, so the
   study holds their measured accuracy. Each further ``refit_every`` results refit the
   predictor and rerun the evolution.

The predicted values are a model's estimate, labelled as such (``predicted``) in the state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from nas.errors import ConfigError
from nas.options import positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype


@dataclass(frozen=True)
class OFAEvolutionOptions:
    """Settings of OFA's specialisation.

    Attributes:
        samples: supernet-scored random subnets the predictor is fitted on (OFA: 16,000).
        hidden: units of each of the predictor's three hidden layers (OFA: 400).
        fit_steps: full-batch Adam steps fitting the predictor.
        population: evolution population (OFA: 100).
        generations: evolution generations (OFA: 500).
        parent_ratio: fraction of a generation kept as parents (OFA: 0.25).
        mutation_ratio: fraction of the children made by mutation, the rest by crossover
            (OFA: 0.5).
        mutate_prob: per-decision resampling probability of a mutation (OFA: 0.1).
        refit_every: refit and evolve again after this many more results (0: never).
    """

    samples: int = 100
    hidden: int = 400
    fit_steps: int = 500
    population: int = 100
    generations: int = 30
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    refit_every: int = 0

    def __post_init__(self) -> None:
        for name in ("samples", "hidden", "fit_steps", "population", "generations"):
            positive(name, getattr(self, name))
        positive("refit_every", self.refit_every, allow_zero=True)
        for name in ("parent_ratio", "mutation_ratio", "mutate_prob"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")


class AccuracyPredictor:
    """OFA's accuracy predictor: an MLP (three ReLU layers) on a genotype's encoding,
    fitted with Adam on mean squared error of standardised values."""

    def __init__(self, hidden: int, steps: int, seed: int) -> None:
        self.hidden, self.steps, self.seed = hidden, steps, seed
        self.params: Any = None
        self.mean = self.std = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray) -> AccuracyPredictor:
        import jax.numpy as jnp

        self.mean, self.std = float(y.mean()), float(y.std() + 1e-8)
        rng = np.random.default_rng(self.seed)
        sizes = [x.shape[1], self.hidden, self.hidden, self.hidden, 1]
        params = [
            (jnp.asarray(rng.normal(0, np.sqrt(2 / a), (a, b)), jnp.float32), jnp.zeros(b))
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        # padded to a power of two (masked): refits on more samples reuse the compiled fit
        n = max(16, 1 << (len(x) - 1).bit_length())
        xs = np.zeros((n, x.shape[1]), np.float32)
        ts = np.zeros(n, np.float32)
        mask = np.zeros(n, np.float32)
        xs[: len(x)], ts[: len(x)], mask[: len(x)] = x, (y - self.mean) / self.std, 1.0
        self.params = _fitter()(params, xs, ts, mask, self.steps)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        import jax.numpy as jnp

        out = _forward(self.params, jnp.asarray(x, jnp.float32))
        return np.asarray(out) * self.std + self.mean


@functools.cache
def _fitter() -> Any:
    """The jitted fit (built on first use: the module imports no JAX)."""
    import jax
    import jax.numpy as jnp
    import optax

    @functools.partial(jax.jit, static_argnames=("steps",))
    def fit(params: Any, x: Any, target: Any, mask: Any, steps: int) -> Any:
        """``steps`` full-batch Adam steps (lr 1e-3) on the masked mean squared error."""
        tx = optax.adam(1e-3)

        def loss(p):
            return jnp.sum(mask * (_forward(p, x) - target) ** 2) / jnp.sum(mask)

        def body(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return (optax.apply_updates(p, u), s), None

        (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
        return params

    return fit


def _forward(params: Any, x: Any) -> Any:
    import jax

    for i, (w, b) in enumerate(params):
        x = x @ w + b
        if i < len(params) - 1:
            x = jax.nn.relu(x)
    return x[:, 0]


class OFAEvolution(Searcher):
    """OFA's specialisation: predictor fitted on supernet-scored subnets, evolution on the
    predictor under the latency table / limits, then the best predicted subnets scored."""

    name = "ofa-evolution"
    Options: ClassVar[type] = OFAEvolutionOptions
    max_objectives: ClassVar[int | None] = 1
    snapshots: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        budget = self.context.budget
        if budget and self.options.samples >= budget:
            # every proposal would be a random sample: the predictor would never be used
            raise ConfigError(
                f"ofa-evolution: samples={self.options.samples} leaves none of the budget "
                f"({budget}) for the predictor's candidates; set samples below the budget "
                "(--set strategy_options.samples=N)"
            )
        self.scored: dict[Genotype, float] = {}
        self.asked: set[Genotype] = set()
        self.queue: list[Genotype] = []
        self.predicted: dict[Genotype, float] = {}
        self.fitted_at = -1

    # ------------------------------------------------------------------ limits

    def valid_sample(self, tries: int = 1000) -> Genotype:
        for _ in range(tries):
            g = self.space.sample(self.rng)
            if self.context.within(g):
                return g
        raise ConfigError(
            f"ofa-evolution: no random subnet within the limits {dict(self.context.limits)} "
            f"in {tries} tries; loosen them"
        )

    # ------------------------------------------------------------------ evolution

    def _child(self, make: Any, tries: int = 50) -> Genotype | None:
        for _ in range(tries):
            g = make()
            if self.context.within(g):
                return g
        return None

    def evolve(self, predictor: AccuracyPredictor) -> list[tuple[Genotype, float]]:
        """OFA's ``EvolutionFinder.run_evolution_search`` against ``predictor``; every
        candidate seen, best predicted first."""
        o = self.options

        def score(gs: list[Genotype]) -> list[float]:
            return list(predictor.predict(np.stack([self.space.encode(g) for g in gs])))

        pop = [self.valid_sample() for _ in range(o.population)]
        seen = dict(zip(pop, score(pop), strict=True))
        n_parents = max(1, int(round(o.population * o.parent_ratio)))
        n_mutate = int(round(o.population * o.mutation_ratio))
        for _ in range(o.generations):
            parents = sorted(pop, key=lambda g: -seen[g])[:n_parents]
            children: list[Genotype] = []
            for k in range(o.population - n_parents):
                if k < n_mutate:
                    p = parents[int(self.rng.integers(len(parents)))]
                    c = self._child(lambda p=p: self.resample(p, self.options.mutate_prob))
                else:
                    a, b = (parents[int(i)] for i in self.rng.integers(len(parents), size=2))
                    c = self._child(lambda a=a, b=b: self.space.crossover(a, b, self.rng))
                if c is not None:
                    children.append(c)
            new = [c for c in children if c not in seen]
            if new:
                seen.update(zip(new, score(new), strict=True))
            pop = parents + children
        return sorted(seen.items(), key=lambda kv: -kv[1])

    def _refit(self) -> None:
        genos = list(self.scored)
        x = np.stack([self.space.encode(g) for g in genos])
        y = np.array([self.scored[g] for g in genos], np.float64)
        o = self.options
        predictor = AccuracyPredictor(o.hidden, o.fit_steps, self.seed).fit(x, y)
        ranked = self.evolve(predictor)
        self.predicted = dict(ranked)
        self.queue = [g for g, _ in ranked if g not in self.asked]
        self.fitted_at = len(self.scored)

    # ------------------------------------------------------------------ ask / tell

    def ask(self) -> Genotype:
        o = self.options
        if len(self.scored) < o.samples:
            g = self.valid_sample()
        else:
            due = o.refit_every and len(self.scored) - self.fitted_at >= o.refit_every
            if self.fitted_at < 0 or due or not self.queue:
                self._refit()
            self.queue = [g for g in self.queue if g not in self.asked]
            g = self.queue.pop(0) if self.queue else self.valid_sample()
        self.asked.add(g)
        return g

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        self.asked.add(genotype)
        if values is not None:
            self.scored[genotype] = float(values[0])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "scored": [[g.to_str(), v] for g, v in self.scored.items()],
            "predicted (model estimate)": len(self.predicted),
        }


__all__ = ["AccuracyPredictor", "OFAEvolution", "OFAEvolutionOptions"]
