"""Optuna samplers (TPE) driven through ask/tell."""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna

from nas.errors import InvalidGenotype
from nas.evaluators.base import EvalResult
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class OptunaSearcher(Searcher):
    """Any Optuna sampler over the space's categorical decisions.

    The sampler works on a private in-memory study; the platform's storage records every
    trial separately. The state is the list of finished (params, value) pairs, replayed into a
    fresh study on restore, and the sampler's own random state.
    """

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, objective: str = "accuracy") -> None:
        super().__init__(space, seed)
        self.objective = objective
        self.n_asked = 0
        self._study = optuna.create_study(direction="maximize", sampler=self.make_sampler(seed))
        self._pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        self._history: list[tuple[dict[str, Any], float | None]] = []

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)

    def ask(self) -> Genotype:
        # Spaces with constraints (NB101's connectivity) can reject a suggestion: fail that
        # internal trial so the sampler learns from it, and ask again.
        for _ in range(200):
            # A sampler seeded by the ask count: proposals depend only on (seed, history), so
            # a restored searcher continues exactly where the original would have.
            self._study.sampler = self.make_sampler(self.seed * 1_000_003 + self.n_asked)
            self.n_asked += 1
            trial = self._study.ask()
            try:
                genotype = self.space.suggest(trial)
            except InvalidGenotype:
                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self._pending.setdefault(genotype, []).append(trial)
            return genotype
        return self.space.sample(self.rng)

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        super().tell(genotype, result)
        trials = self._pending.get(genotype)
        value = float(result.metrics.get(self.objective, math.nan)) if result.ok else None
        if not trials:  # told without asking (restored history): add it as a finished trial
            return
        trial = trials.pop(0)
        if not trials:
            del self._pending[genotype]
        if value is None or not math.isfinite(value):
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            value = None
        else:
            self._study.tell(trial, value)
        self._history.append((dict(trial.params), value))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "history": [[p, v] for p, v in self._history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self._study = optuna.create_study(
            direction="maximize", sampler=self.make_sampler(self.seed)
        )
        dists = {
            name: optuna.distributions.CategoricalDistribution(list(range(n)))
            for name, n in self.space.choices()
        }
        self._history = [(dict(p), v) for p, v in state["history"]]
        for params, value in self._history:
            self._study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: dists[k] for k in params},
                    value=value,
                    state=optuna.trial.TrialState.COMPLETE
                    if value is not None
                    else optuna.trial.TrialState.FAIL,
                )
            )
