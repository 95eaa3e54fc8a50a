"""BigNAS's coarse-to-fine architecture selection.

BigNAS (Yu et al. 2020, section 3.3) selects children of a trained single-stage supernet in
two stages instead of searching the whole space at once:

1. **coarse**: a small grid of networks that scale uniformly -- one input resolution and one
   relative setting per kind of decision (widths, depths, kernel sizes, expansion ratios)
   for the whole network -- scored on the supernet; the best within the limits is kept;
2. **fine**: random mutations of the best so far (each decision resampled with probability
   ``mutate_prob``), kept when they fit the limits, the best replacing it as they come in.

Decisions are grouped by the prefix of their name in ``space.choices()`` (``w_3`` is a width,
``ks_12`` a kernel size); a coarse level ``q`` in [0, 1] takes, for every decision of its
group, the option at that relative position. So the strategy serves any space whose choices
are ordered from small to large (BigNAS, OFA).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.errors import ConfigError
from nas.options import positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype


@dataclass(frozen=True)
class CoarseToFineOptions:
    """Settings of the coarse-to-fine selection.

    Attributes:
        levels: relative settings per group in the coarse grid (3: smallest, middle,
            largest).
        coarse: at most this many coarse candidates (drawn from the grid by the seed when it
            is larger), all within the limits.
        mutate_prob: per-decision resampling probability of a fine-stage mutation.
    """

    levels: int = 3
    coarse: int = 30
    mutate_prob: float = 0.1

    def __post_init__(self) -> None:
        positive("levels", self.levels)
        positive("coarse", self.coarse)
        if not 0 < self.mutate_prob <= 1:
            raise ConfigError(f"mutate_prob must be in (0, 1], got {self.mutate_prob}")


class CoarseToFine(Searcher):
    """BigNAS's coarse-to-fine selection: a grid of uniformly scaled networks, then random
    mutations of the best."""

    name = "coarse-to-fine"
    Options: ClassVar[type] = CoarseToFineOptions
    max_objectives: ClassVar[int | None] = 1
    snapshots: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = sorted({n.rsplit("_", 1)[0] for n, _ in self.space.choices()})
        self.grid = self._grid()
        self.best: tuple[Genotype, float] | None = None
        self.asked: set[Genotype] = set()

    def at_levels(self, levels: dict[str, float]) -> Genotype:
        """The genotype taking, for every decision, the option at its group's level."""
        idx = [int(round(levels[n.rsplit("_", 1)[0]] * (k - 1))) for n, k in self.space.choices()]
        return self.space.from_indices(idx)

    def _grid(self) -> list[Genotype]:
        o = self.options
        qs = [i / max(1, o.levels - 1) for i in range(o.levels)] if o.levels > 1 else [1.0]
        combos = list(itertools.product(qs, repeat=len(self.groups)))
        order = self.rng.permutation(len(combos))
        out: list[Genotype] = []
        for i in order:
            g = self.at_levels(dict(zip(self.groups, combos[int(i)], strict=True)))
            if g not in out and self.context.within(g):
                out.append(g)
            if len(out) >= o.coarse:
                break
        if not out:
            raise ConfigError(
                f"coarse-to-fine: no uniformly scaled network fits {dict(self.context.limits)}"
            )
        return out

    def _mutate(self, g: Genotype) -> Genotype:
        for _ in range(100):
            child = self.resample(g, self.options.mutate_prob)
            if child not in self.asked and self.context.within(child):
                return child
        return self.space.mutate(g, self.rng)

    def ask(self) -> Genotype:
        pending = [g for g in self.grid if g not in self.asked]
        if pending:
            g = pending[0]
        else:
            parent = self.best[0] if self.best is not None else self.grid[0]
            g = self._mutate(parent)
        self.asked.add(g)
        return g

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        self.asked.add(genotype)
        if values is not None and (self.best is None or values[0] > self.best[1]):
            self.best = (genotype, float(values[0]))


__all__ = ["CoarseToFine", "CoarseToFineOptions"]
