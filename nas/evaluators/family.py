"""A weight-sharing family's own evaluator behind the ``supernet`` name.

Until a family implements :class:`nas.supernet.Supernet` (the ``gpt`` language models bring
their own evaluator), :class:`nas.evaluators.oneshot.SupernetEvaluator` hands its space to
:class:`FamilyEvaluator`, which gives that evaluator the registry's construction shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import ConfigError, InvalidGenotype
from nas.evaluators.base import EvalResult, Evaluator
from nas.space import Genotype, SearchSpace


class FamilyEvaluator(Evaluator):
    """A space's own weight-sharing evaluator in the registry's construction shape, for a
    family that does not implement :class:`nas.supernet.Supernet` yet (the ``gpt`` language
    models): the space names its option keys (``supernet_option_keys``) and builds the
    evaluator (``supernet_evaluator``), which does the work."""

    name = "supernet"

    def __init__(self, space: SearchSpace, dataset: str | None = None, **kwargs: Any) -> None:
        options = dict(kwargs.pop("options", None) or {})
        valid = set(space.supernet_option_keys()) | {"run_dir"}  # type: ignore[attr-defined]
        unknown = sorted(set(options) - valid)
        if unknown:
            raise ConfigError(
                f"supernet evaluator options: unknown key {unknown[0][:40]!r}; valid keys: "
                f"{', '.join(sorted(valid - {'run_dir'}))}"
            )
        if kwargs.get("run_dir") is not None:
            options.setdefault("run_dir", kwargs["run_dir"])
        seed = kwargs.get("seed", 0)
        self.inner = space.supernet_evaluator(  # type: ignore[attr-defined]
            dataset, seed=seed, data_dir=kwargs.get("data_dir"), **options
        )
        self.space = space
        self.dataset = self.inner.dataset
        self.seed = seed
        self.options = options
        self.metrics = self.inner.metrics  # what the family's evaluator measures

    def evaluate(self, genotype: Genotype, workdir: Path | None = None) -> EvalResult:
        if not self.space.contains(genotype):  # before any training
            raise InvalidGenotype(f"{self.space.name}: not one of its genotypes: {genotype!r:.80}")
        return self.inner.evaluate(genotype, workdir)

    def cost(self, genotype: Genotype) -> dict[str, float]:
        return self.inner.cost(genotype)

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def child_model(self, genotype: Genotype) -> Any:
        return self.inner.child_model(genotype)

    def __getattr__(self, name: str) -> Any:  # the family evaluator's own methods
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


__all__ = ["FamilyEvaluator"]
