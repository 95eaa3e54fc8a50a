"""Optuna samplers (TPE, NSGA-II) driven through ask/tell."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna

from nas.errors import InvalidGenotype
from nas.evaluators.base import EvalResult
from nas.objectives import Objective, parse_objectives
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class OptunaSearcher(Searcher):
    """Any Optuna sampler over the space's categorical decisions, for one or more objectives.

    The sampler works on a private in-memory study (one direction per objective); the
    platform's storage records every trial separately. The state is the list of finished
    (params, values, sampler attributes) entries, replayed into a fresh study on restore;
    the sampler is re-seeded from the ask count, so a restored searcher proposes exactly what
    the original would have.

    Args:
        space: the search space.
        seed: random seed.
        objective: the metric to maximise (single-objective shorthand).
        objectives: objective names (``["accuracy", "flops"]``) or :class:`Objective` s;
            overrides ``objective``.
    """

    name = "tpe"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        objective: str = "accuracy",
        objectives: Sequence[str | Objective] | None = None,
    ) -> None:
        super().__init__(space, seed)
        self.objectives = _objectives(objectives or [objective])
        self.objective = self.objectives[0].name
        self.n_asked = 0
        self._study = self._new_study()
        self._pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        # (params, values or None when failed, sampler system attributes)
        self._history: list[tuple[dict[str, Any], list[float] | None, dict[str, Any]]] = []
        self._ids: list[int] = []  # internal trial id of each history entry

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True)

    def _new_study(self) -> optuna.Study:
        return optuna.create_study(
            directions=[o.direction for o in self.objectives],
            sampler=self.make_sampler(self.seed),
        )

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

    def _values(self, result: EvalResult) -> list[float] | None:
        if not result.ok:
            return None
        values = [o.value(result) for o in self.objectives]
        return None if any(v is None for v in values) else values  # type: ignore[return-value]

    def tell(self, genotype: Genotype, result: EvalResult) -> None:
        super().tell(genotype, result)
        values = self._values(result)
        trials = self._pending.get(genotype)
        if not trials:
            # Told without asking (a trial re-run after a restart, or one another driver
            # evaluated): the sampler learns it as a finished trial.
            params = dict(
                zip(
                    (n for n, _ in self.space.choices()),
                    self.space.to_indices(genotype),
                    strict=True,
                )
            )
            self._ids.append(self._add(params, values, {}))
            self._history.append((params, values, {}))
            return
        trial = trials.pop(0)
        if not trials:
            del self._pending[genotype]
        if values is None:
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, values)
        attrs = self._study._storage.get_trial_system_attrs(trial._trial_id)
        self._history.append((dict(trial.params), values, dict(attrs)))
        self._ids.append(trial._trial_id)

    def _add(
        self, params: dict[str, Any], values: list[float] | None, attrs: dict[str, Any]
    ) -> int:
        dists = {
            name: optuna.distributions.CategoricalDistribution(list(range(n)))
            for name, n in self.space.choices()
        }
        self._study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=values,
                system_attrs=attrs,
                state=optuna.trial.TrialState.COMPLETE
                if values is not None
                else optuna.trial.TrialState.FAIL,
            )
        )
        return self._study._storage.get_all_trials(self._study._study_id, deepcopy=False)[
            -1
        ]._trial_id

    def _study_attrs(self) -> dict[str, Any]:
        """The sampler's study attributes; trial ids (GA parent caches) as history positions."""
        pos = {tid: i for i, tid in enumerate(self._ids)}
        out: dict[str, Any] = {}
        for key, value in self._study._storage.get_study_system_attrs(
            self._study._study_id
        ).items():
            if ":parent:" in key:
                if all(t in pos for t in value):
                    out[key] = {"positions": [pos[t] for t in value]}
            else:
                out[key] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "history": [[p, v, a] for p, v, a in self._history],
            "study_attrs": self._study_attrs(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self._study = self._new_study()
        self._pending = {}
        self._history = []
        self._ids = []
        for entry in state["history"]:
            params, values = dict(entry[0]), entry[1]
            attrs = dict(entry[2]) if len(entry) > 2 else {}
            if values is not None and not isinstance(values, list):  # single value (old state)
                values = [float(values)]
            self._ids.append(self._add(params, values, attrs))
            self._history.append((params, values, attrs))
        for key, value in state.get("study_attrs", {}).items():
            if isinstance(value, dict) and "positions" in value:
                value = [self._ids[i] for i in value["positions"]]
            self._study._storage.set_study_system_attr(self._study._study_id, key, value)


class NSGA2Searcher(OptunaSearcher):
    """Optuna's NSGA-II (Deb et al. 2002) for one or several objectives.

    Args:
        space, seed, objective, objectives: as for :class:`OptunaSearcher`.
        population_size: individuals per generation.
    """

    name = "nsga2"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        objective: str = "accuracy",
        objectives: Sequence[str | Objective] | None = None,
        population_size: int = 20,
    ) -> None:
        self.population_size = population_size
        super().__init__(space, seed, objective=objective, objectives=objectives)

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)


def _objectives(items: Sequence[str | Objective]) -> tuple[Objective, ...]:
    if all(isinstance(o, Objective) for o in items):
        return tuple(items)  # type: ignore[arg-type]
    return parse_objectives(
        [
            f"{o.name}:{'max' if o.direction == 'maximize' else 'min'}"
            if isinstance(o, Objective)
            else o
            for o in items
        ]
    )
