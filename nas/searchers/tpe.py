"""Optuna samplers (TPE, NSGA-II) driven through ask/tell."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna

from nas.errors import InvalidGenotype
from nas.options import positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype


@dataclass(frozen=True)
class TPEOptions:
    """TPE's settings.

    Attributes:
        n_startup: random proposals before the Parzen estimators are used.
        multivariate: model the decisions jointly (Optuna's multivariate TPE).
    """

    n_startup: int = 10
    multivariate: bool = True

    def __post_init__(self) -> None:
        positive("tpe n_startup", self.n_startup, allow_zero=True)


@dataclass(frozen=True)
class NSGA2Options:
    """NSGA-II's settings.

    Attributes:
        population: individuals per generation.
    """

    population: int = 20

    def __post_init__(self) -> None:
        if self.population < 2:
            from nas.errors import ConfigError

            raise ConfigError(f"nsga2 population must be at least 2, got {self.population}")


class OptunaSearcher(Searcher):
    """An Optuna sampler over the space's categorical decisions, for any number of objectives.

    The sampler works on a private in-memory study whose every direction is "maximize": it
    receives the run's objective values already oriented (larger is better), so it optimises
    exactly the study's objectives. The platform's storage records the trials separately.
    The sampler is re-seeded from the ask count, so proposals depend only on the seed and the
    asks and tells so far: a searcher is restored by replaying them (``snapshots = False``),
    which needs nothing of Optuna's internals.
    """

    name = "tpe"
    Options: ClassVar[type] = TPEOptions
    max_objectives: ClassVar[int | None] = None
    snapshots: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n_asked = 0
        self._study = self._new_study()
        self._pending: dict[Genotype, list[optuna.trial.Trial]] = {}
        self._distributions = {
            name: optuna.distributions.CategoricalDistribution(list(range(n)))
            for name, n in self.space.choices()
        }

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                n_startup_trials=self.options.n_startup,
                multivariate=self.options.multivariate,
            )

    def _new_study(self) -> optuna.Study:
        # The private study's own log lines ("A new study created in memory", "Trial 3
        # finished") say nothing the user asked for: hold them back for this call only,
        # without changing Optuna's verbosity for the caller.
        with _quiet_optuna():
            return optuna.create_study(
                directions=["maximize"] * len(self.objectives),
                sampler=self.make_sampler(self.seed),
            )

    def ask(self) -> Genotype:
        # Spaces with constraints (NB101's connectivity) can reject a suggestion: fail that
        # internal trial so the sampler learns from it, and ask again.
        for _ in range(200):
            self._study.sampler = self.make_sampler(self.seed * 1_000_003 + self.n_asked)
            self.n_asked += 1
            with _quiet_optuna():
                trial = self._study.ask()
                try:
                    genotype = self.space.suggest(trial)
                except InvalidGenotype:
                    self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
            self._pending.setdefault(genotype, []).append(trial)
            return genotype
        return self.space.sample(self.rng)

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        trials = self._pending.get(genotype)
        with _quiet_optuna():
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
                done = optuna.trial.TrialState.COMPLETE
                self._study.add_trial(
                    optuna.trial.create_trial(
                        params=params,
                        distributions={k: self._distributions[k] for k in params},
                        values=list(values) if values is not None else None,
                        state=done if values is not None else optuna.trial.TrialState.FAIL,
                    )
                )
                return
            trial = trials.pop(0)
            if not trials:
                del self._pending[genotype]
            if values is None:
                self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(trial, list(values))


class NSGA2Searcher(OptunaSearcher):
    """Optuna's NSGA-II (Deb et al. 2002) for one or several objectives."""

    name = "nsga2"
    Options: ClassVar[type] = NSGA2Options

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(population_size=self.options.population, seed=seed)


class _quiet_optuna:
    """Optuna's logger at WARNING inside the block, restored afterwards."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("optuna")
        self.level = self.logger.level
        self.logger.setLevel(max(self.level, logging.WARNING))

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)
