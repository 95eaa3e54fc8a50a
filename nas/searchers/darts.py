"""DARTS as a strategy of the search loop.

A DARTS search is one differentiable search, not a stream of proposals: the searcher's first
``ask`` runs the whole bilevel optimisation
(:func:`search_spaces.darts.search.darts_search`) and returns the derived genotype; the
search loop then evaluates that genotype with the chosen evaluator (for example a short
training of the derived network with ``--evaluator train``) and stores it as a trial of the
Optuna study like any other, so ``nas export`` and ``nas inspect`` accept it. The trial's
metrics are the evaluator's, plus the supernet's ``supernet_val_accuracy`` and the search
timings; its artifacts include the alpha history (``alpha_history.json``).

On the command line ``--budget`` is the number of search steps (one architecture update and
one weight update each); exactly one trial is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.evaluators.base import EvalResult, Evaluator
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


class DartsSearcher(Searcher):
    """Runs a DARTS search on the first ``ask`` and proposes the derived genotype.

    Args:
        space: the DARTS space (or NB301, which shares its cells).
        seed: initialisation and data-order seed.
        steps: search steps.
        order: 1 (first-order) or 2 (second-order) architecture gradient.
        dataset: training data of the search (``digits``, ``cifar10``).
        out_dir: folder for ``alpha_history.json`` (nothing written when ``None``).
        data_dir: local CIFAR-10 folder.
        **config: further :class:`~search_spaces.darts.search.DartsSearchConfig` fields.
    """

    name = "darts"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        steps: int = 100,
        order: int = 1,
        dataset: str = "digits",
        out_dir: str | Path | None = None,
        data_dir: str | None = None,
        **config: Any,
    ) -> None:
        from search_spaces.darts import DartsSpace
        from search_spaces.darts.search import DartsSearchConfig

        if not isinstance(space, DartsSpace):
            raise ConfigError(
                f"strategy 'darts' searches the DARTS cell space; space {space.name!r} is not one "
                "(use --space darts)"
            )
        super().__init__(space, seed)
        self.config = DartsSearchConfig(steps=steps, order=order, seed=seed, **config)
        self.dataset = dataset
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.data_dir = data_dir
        self.genotype: str | None = None
        self.search_metrics: dict[str, float] = {}
        self.history_file: str | None = None

    def ask(self) -> Genotype:
        if self.genotype is None:
            from search_spaces.darts.search import darts_search

            r = darts_search(
                self.dataset,
                self.config,
                out_dir=self.out_dir,
                data_dir=self.data_dir,
                genotype_cls=self.space.genotype_cls,
            )
            self.genotype = r.genotype.to_str()
            self.search_metrics = {**r.metrics, "traces": float(r.traces)}
            if self.out_dir is not None:
                self.history_file = str(self.out_dir / "alpha_history.json")
        return self.space.parse(self.genotype)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "config": self.config.to_json(),
            "genotype": self.genotype,
            "search_metrics": self.search_metrics,
            "history_file": self.history_file,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.genotype = state.get("genotype")
        self.search_metrics = dict(state.get("search_metrics") or {})
        self.history_file = state.get("history_file")


class WithSearchMetrics(Evaluator):
    """Adds a :class:`DartsSearcher`'s supernet metrics and alpha history to each result."""

    def __init__(self, inner: Evaluator, searcher: DartsSearcher) -> None:
        self.inner = inner
        self.searcher = searcher
        self.space = inner.space
        self.dataset = inner.dataset
        self.name = inner.name

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        r = self.inner.evaluate(genotype, workdir)
        r.metrics = {**r.metrics, **self.searcher.search_metrics}
        if self.searcher.history_file:
            r.artifacts = {**r.artifacts, "alpha_history": self.searcher.history_file}
        return r

    def cost(self, genotype: Genotype) -> dict[str, float]:
        return self.inner.cost(genotype)

    def settings(self) -> dict[str, Any]:
        return {**self.inner.settings(), "darts": self.searcher.config.to_json()}


def darts_cli_setup(
    space: SearchSpace,
    evaluator: Evaluator,
    steps: int,
    order: int,
    seed: int,
    out_dir: str | Path,
    data_dir: str | None = None,
) -> tuple[DartsSearcher, Evaluator, int]:
    """``nas search --strategy darts``: (searcher, evaluator, number of trials = 1)."""
    searcher = DartsSearcher(
        space,
        seed=seed,
        steps=steps,
        order=order,
        dataset=evaluator.dataset,
        out_dir=out_dir,
        data_dir=data_dir,
    )
    return searcher, WithSearchMetrics(evaluator, searcher), 1
