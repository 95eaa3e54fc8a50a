"""Optuna samplers (TPE) driven through ask/tell."""

from __future__ import annotations

import math
from typing import Any

import optuna

from nas.evaluators.base import EvalResult
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


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
        self._sampler = self.make_sampler(seed)
        self._study = optuna.create_study(direction="maximize", sampler=self._sampler)
        self._pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        self._history: list[tuple[dict[str, Any], float | None]] = []

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)

    def ask(self) -> Genotype:
        trial = self._study.ask()
        genotype = self.space.suggest(trial)
        self._pending.setdefault(genotype, []).append(trial)
        return genotype

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
        return {**super().state_dict(), "history": [[p, v] for p, v in self._history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._sampler = self.make_sampler(self.seed + len(state["history"]))
        self._study = optuna.create_study(direction="maximize", sampler=self._sampler)
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
