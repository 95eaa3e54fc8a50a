"""The two kinds of strategy: sample-based (ask/tell) and one-shot.

A **sample-based** strategy (:class:`Searcher`) proposes genotypes one at a time and learns
from their scores: random search, evolution, TPE, NSGA-II, the predictor-guided ones. A
**one-shot** strategy (:class:`OneShotStrategy`) trains something once -- DARTS's supernet
with architecture weights -- and derives one genotype from it.

Both optimise exactly the study's objectives. The search loop turns each trial's metrics
into *oriented* objective values once (see :func:`nas.objectives.oriented`: every value
larger-is-better), and a strategy receives those, never a metric name of its own choosing.
A strategy that handles at most ``max_objectives`` objectives is refused at start for more,
with the names of the strategies that can.

Hard limits (``max_flops`` & co.) hold for both kinds: sample-based strategies are wrapped
in :class:`~nas.searchers.wrappers.Constrained`; a one-shot strategy receives the limits
in its :class:`SearchContext` and derives the best genotype within them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from nas.objectives import Objective
from nas.options import NoOptions, build_options
from nas.space import Genotype, SearchSpace

if TYPE_CHECKING:
    from nas.evaluators.base import Evaluator

Values = tuple[float, ...]
"""A trial's objective values, oriented so that larger is better, in the study's order."""


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


@dataclass(frozen=True)
class SearchContext:
    """What a strategy may know about the run beyond its space and objectives.

    Attributes:
        budget: trials the search will finish.
        limits: hard limits on cost keys (``flops``, ``params``, ``latency``) -> maximum.
        cost: genotype -> cost dict (``params``, ``flops``, ``latency`` where the space has a
            latency model), the same numbers the limits are checked against.
        run_dir: the run folder (for files a strategy writes, such as DARTS' alpha history).
        dataset: the network variant and data the evaluator uses.
        data_dir: a local data folder, where the dataset needs one.
        progress: whether long work may draw a progress bar.
    """

    budget: int = 0
    limits: Mapping[str, float] = field(default_factory=dict)
    cost: Callable[[Genotype], dict[str, float]] | None = None
    run_dir: Path | None = None
    dataset: str | None = None
    data_dir: str | None = None
    progress: bool = False

    def within(self, genotype: Genotype) -> bool:
        """Whether ``genotype``'s cost is within every hard limit (always, without limits)."""
        if not self.limits or self.cost is None:
            return True
        c = self.cost(genotype)
        return all(c.get(k, 0.0) <= v for k, v in self.limits.items())


class Strategy:
    """What both kinds share: a registered name, typed options, the objectives they take."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    max_objectives: ClassVar[int | None] = 1
    """The most objectives the strategy optimises (``None``: any number)."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        options: Any = None,
        context: SearchContext | None = None,
    ) -> None:
        self.space = space
        self.objectives = tuple(objectives)
        self.seed = seed
        self.options = build_options(self.Options, options, "strategy_options")
        self.context = context or SearchContext()


class Searcher(Strategy, ABC):
    """A sample-based strategy: proposes genotypes (``ask``), learns their values (``tell``).

    Call order: any number of ``ask`` calls may be outstanding (asynchronous workers); each
    proposed genotype is later passed to ``tell`` exactly once, in any order, with its
    oriented objective values (``None`` when the trial failed or was rejected). A genotype may
    also be told without having been asked (a trial re-run after a restart, or one another
    driver evaluated). ``state_dict`` captures everything needed to continue after a restart:
    a searcher built with the same arguments and given that state proposes exactly what the
    original would have proposed next; so does one that replays the same asks and tells.
    """

    kind = "sample"
    snapshots: ClassVar[bool] = True
    """Whether ``state_dict``/``load_state_dict`` restore the searcher. Where ``False`` it is
    restored by replaying its asks and tells from the start (cheap for it, and nothing of
    its state needs saving)."""

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        seed: int = 0,
        options: Any = None,
        context: SearchContext | None = None,
    ) -> None:
        super().__init__(space, objectives, seed, options, context)
        self.rng = np.random.default_rng(seed)
        self.n_told = 0

    @abstractmethod
    def ask(self) -> Genotype:
        """The next genotype to evaluate."""

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        """Record the oriented objective values of a genotype (``None``: it failed)."""
        self.n_told += 1

    def resample(self, genotype: Genotype, prob: float) -> Genotype:
        """``genotype`` with each decision redrawn uniformly with probability ``prob`` (the
        mutation of OFA's evolution finder and BigNAS's fine stage)."""
        idx = self.space.to_indices(genotype)
        for i, (_, n) in enumerate(self.space.choices()):
            if self.rng.random() < prob:
                idx[i] = int(self.rng.integers(n))
        return self.space.from_indices(idx)

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rng": rng_state(self.rng), "n_told": self.n_told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng = rng_from_state(state["rng"])
        self.n_told = int(state["n_told"])


@dataclass
class Derived:
    """What a one-shot strategy derives: the genotype, its search metrics and files."""

    genotype: Genotype
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


class OneShotStrategy(Strategy, ABC):
    """A strategy that trains once and derives one genotype (DARTS).

    The search loop calls :meth:`check` before any work (impossible limits, a space it cannot
    search: a :class:`~nas.errors.ConfigError`), then :meth:`derive` once; the derived genotype
    is evaluated by the run's evaluator and stored as one trial, with the search metrics
    added to the evaluator's.
    """

    kind = "one-shot"

    def check(self, evaluator: Evaluator) -> None:
        """Refuse, before any work, what the strategy cannot do with these settings."""
        return None

    @abstractmethod
    def derive(self, evaluator: Evaluator) -> Derived:
        """Run the search and return the derived genotype, within the context's limits."""


__all__ = [
    "Derived",
    "OneShotStrategy",
    "SearchContext",
    "Searcher",
    "Strategy",
    "Values",
    "rng_from_state",
    "rng_state",
]
