"""The searcher protocol: ask/tell with state that can be saved and restored."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from nas.evaluators.base import EvalResult
from nas.space import Genotype, SearchSpace


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


class Searcher(ABC):
    """Proposes genotypes (``ask``) and learns from their results (``tell``).

    Call order: any number of ``ask`` calls may be outstanding (asynchronous workers); each
    proposed genotype is later passed to ``tell`` exactly once with its result, in any order.
    ``state_dict`` captures everything needed to continue after a restart; a searcher built
    with the same arguments and given that state with ``load_state_dict`` proposes exactly what
    the original would have proposed next.
    """

    name: str = ""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.n_told = 0

    @abstractmethod
    def ask(self) -> Genotype:
        """The next genotype to evaluate."""

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        """Record the result of a proposed genotype."""
        self.n_told += 1

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rng": rng_state(self.rng), "n_told": self.n_told}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng = rng_from_state(state["rng"])
        self.n_told = int(state["n_told"])
