"""DARTS as a one-shot strategy: train the supernet once, derive one genotype within the limits.

A DARTS search is one differentiable search, not a stream of proposals.
:meth:`DartsStrategy.derive` runs the whole bilevel optimisation
(:func:`nas.search_spaces.darts.search.darts_search`; ``--budget`` is its number of search
steps) and derives the genotype; the search loop then evaluates it with the run's evaluator
(for example a short training of the derived network with ``--evaluator train``) and stores
it as the run's one trial, with the supernet's metrics and the alpha history
(``alpha_history.json``) added.

Hard limits (``--max-params``, ``--max-flops``) hold: the derivation keeps DARTS' choice
where it fits, and otherwise the genotype of the largest total log-weight whose cost fits
(:func:`derive_within`). A limit that even the cheapest derivable cell (parameter-free
operations everywhere) cannot meet is refused before the search starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from nas.errors import ConfigError
from nas.evaluators.base import Evaluator
from nas.searchers.base import Derived, OneShotStrategy
from nas.space import Genotype


@dataclasses.dataclass(frozen=True)
class DartsOptions:
    """DARTS' options (the search network and optimisers; defaults: the DARTS paper's).

    Attributes:
        order: 1 (first-order) or 2 (second-order, unrolled) architecture gradient.
        C, layers: supernet width and cells (``None``: per dataset).
        batch_size: images per training and per validation batch.
        lr, lr_min, momentum, weight_decay, grad_clip: the weight optimiser.
        arch_lr, arch_weight_decay: the architecture optimiser (Adam).
    """

    order: int = 1
    C: int | None = None
    layers: int | None = None
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ConfigError(f"--order must be 1 or 2, got {self.order}")
        for name in ("C", "layers"):
            v = getattr(self, name)
            if v is not None and not 1 <= v <= 4096:
                raise ConfigError(f"darts {name} must be between 1 and 4096, got {v}")


Slot = tuple[int, int]  # (input node, op index) of one incoming edge


class _CellCosts:
    """Cost of a derived genotype as a base plus one term per chosen (cell, op, input kind).

    Every operation of a DARTS cell is its own module, so parameters and multiply-adds add
    up over the chosen edges: a term depends on the cell type, the operation and, in a
    reduction cell, whether the edge reads a cell input (stride 2) or an intermediate node.
    The terms are measured once on the real network (one count per term) and the derived
    genotype's true cost is checked at the end.
    """

    def __init__(
        self, cost: Callable[[Genotype], dict[str, float]], make: Callable, keys: list[str]
    ):
        from nas.search_spaces.darts.genotypes import PRIMITIVES

        self.keys = keys
        self.ops = [i for i, p in enumerate(PRIMITIVES) if p != "none"]
        self.cheap = PRIMITIVES.index("max_pool_3x3")
        base_cell = self._uniform_cell(self.cheap)
        base = cost(make(base_cell, base_cell))
        self.base = np.array([base[k] for k in keys], np.float64)
        self.term: dict[tuple[int, int, bool], np.ndarray] = {}
        for cell in (0, 1):
            for op in self.ops:
                for from_input in (True, False):
                    test = list(base_cell)
                    test[2 if from_input else 4] = (
                        0 if from_input else 2,
                        op,
                    )  # node 3's first edge
                    cells = [base_cell, base_cell]
                    cells[cell] = tuple(test)
                    c = cost(make(*cells))
                    self.term[cell, op, from_input] = np.array([c[k] for k in keys]) - self.base
        self._cheap_term = {k: v for k, v in self.term.items() if k[1] == self.cheap}

    @staticmethod
    def _uniform_cell(op: int) -> tuple[Slot, ...]:
        # node j = 2..5 takes inputs 0 and 1 for node 2, then (0, j-1) ... as two slots each
        return ((0, op), (1, op), (0, op), (1, op), (0, op), (1, op), (0, op), (1, op))

    def of(self, cells: list[list[Slot]]) -> np.ndarray:
        total = self.base.copy()
        for cell, slots in enumerate(cells):
            for s, op in slots:
                total += self.term[cell, op, s < 2] - self.term[cell, self.cheap, s < 2]
        return total


def derive_within(
    weights: tuple[np.ndarray, np.ndarray],
    limits: dict[str, float],
    costs: _CellCosts,
) -> list[list[Slot]]:
    """The cells of largest total log-weight whose (additive) cost meets ``limits``.

    Starts from DARTS' own derivation and, while a limit is exceeded, makes the change that
    gives up the least log-weight per unit of the worst exceeded limit: a greedy descent; each
    node keeps two distinct input edges. Then spends any slack on the changes that raise the
    log-weight most while the cost still fits.
    """
    from nas.search_spaces.darts.search import derive_cell

    logw = [np.log(np.maximum(np.asarray(w, np.float64), 1e-12)) for w in weights]
    cells = [[_slot(p) for p in derive_cell(w)] for w in weights]
    cap = np.array([limits[k] for k in costs.keys])

    def score(cs: list[list[Slot]]) -> float:
        return float(
            sum(logw[c][_edge(i, s), op] for c in (0, 1) for i, (s, op) in enumerate(cs[c]))
        )

    for _ in range(200):
        over = (costs.of(cells) - cap) / cap
        if over.max() <= 0:
            break
        worst = int(np.argmax(over))
        best, best_rate = None, -np.inf
        for cand in _neighbours(cells, costs.ops):
            saved = costs.of(cells)[worst] - costs.of(cand)[worst]
            if saved <= 0:
                continue
            rate = (score(cand) - score(cells)) / saved
            if rate > best_rate:
                best, best_rate = cand, rate
        if best is None:
            break
        cells = best
    for _ in range(200):  # spend the slack: the best-scoring change that still fits
        fits = [c for c in _neighbours(cells, costs.ops) if (costs.of(c) <= cap).all()]
        better = max(fits, key=score, default=None)
        if better is None or score(better) <= score(cells):
            break
        cells = better
    return cells


def _slot(pair: tuple[str, int]) -> Slot:
    from nas.search_spaces.darts.genotypes import PRIMITIVES

    return (pair[1], PRIMITIVES.index(pair[0]))


def _edge(position: int, source: int) -> int:
    """Row of the (14, 8) weights for slot ``position`` (node ``2 + position // 2``) reading
    ``source``."""
    node = 2 + position // 2
    return sum(range(2, node)) + source


def _neighbours(cells: list[list[Slot]], ops: list[int]) -> list[list[list[Slot]]]:
    out = []
    for c in (0, 1):
        for i, (s, op) in enumerate(cells[c]):
            node = 2 + i // 2
            other = cells[c][i ^ 1][0]
            for s2 in range(node):
                if s2 == other:
                    continue
                for op2 in ops:
                    if (s2, op2) != (s, op):
                        new = [list(cells[0]), list(cells[1])]
                        new[c][i] = (s2, op2)
                        out.append(new)
    return out


class DartsStrategy(OneShotStrategy):
    """DARTS (Liu et al. 2019): differentiable search of the DARTS cell space, one objective.

    ``--budget`` is the number of search steps. Options: :class:`DartsOptions`.
    """

    name = "darts"
    Options: ClassVar[type] = DartsOptions

    def check(self, evaluator: Evaluator) -> None:
        from nas.search_spaces.darts import DartsSpace

        if not isinstance(self.space, DartsSpace):
            raise ConfigError(
                f"strategy 'darts' searches the DARTS cell space; space {self.space.name!r} is "
                "not one (use --space darts)"
            )
        if self.objectives[0].name != "accuracy" or len(self.objectives) > 1:
            raise ConfigError(
                "strategy 'darts' optimises the supernet's accuracy (its training loss); use "
                "the default objective and hard limits (--max-params, --max-flops) for cost"
            )
        limits = dict(self.context.limits)
        if "latency" in limits:
            raise ConfigError("strategy 'darts' has no latency model; use --max-params/--max-flops")
        if limits:
            self._costs = _CellCosts(evaluator.cost, self._make, sorted(limits))
            cheapest = self._costs.base
            for k, v in zip(self._costs.keys, cheapest, strict=True):
                if v > limits[k]:
                    raise ConfigError(
                        f"impossible limit --max-{k} {_qty(limits[k])}: the cheapest DARTS cell "
                        f"(max pooling everywhere) already has {k} {_qty(v)}"
                    )

    def _make(self, normal: tuple[Slot, ...], reduce: tuple[Slot, ...]) -> Genotype:
        from nas.search_spaces.darts.genotypes import PRIMITIVES

        def cell(slots: tuple[Slot, ...] | list[Slot]) -> tuple[tuple[str, int], ...]:
            return tuple((PRIMITIVES[op], s) for s, op in slots)

        return self.space.genotype_cls(cell(normal), cell(reduce))  # type: ignore[attr-defined]

    def derive(self, evaluator: Evaluator) -> Derived:
        from nas.search_spaces.darts.search import DartsSearchConfig, darts_search

        o = self.options
        config = DartsSearchConfig(
            steps=self.context.budget, seed=self.seed, **dataclasses.asdict(o)
        )
        out_dir = self.context.run_dir
        r = darts_search(
            evaluator.dataset,
            config,
            out_dir=out_dir,
            data_dir=self.context.data_dir,
            genotype_cls=self.space.genotype_cls,  # type: ignore[attr-defined]
        )
        genotype: Genotype = r.genotype
        metrics: dict[str, float] = {**r.metrics, "traces": float(r.traces)}
        limits = dict(self.context.limits)
        if limits:
            weights = (np.asarray(r.history[-1]["normal"]), np.asarray(r.history[-1]["reduce"]))
            cells = derive_within(weights, limits, self._costs)
            genotype = self._make(*cells)
            cost = evaluator.cost(genotype)
            bad = {k: cost[k] for k in limits if cost[k] > limits[k]}
            if bad:  # the additive model is exact for DARTS cells; say so loudly if not
                raise ConfigError(f"DARTS could not derive a genotype within {limits}: got {bad}")
            metrics["constrained"] = float(genotype.to_str() != r.genotype.to_str())
        artifacts: dict[str, Any] = {}
        if out_dir is not None:
            artifacts["alpha_history"] = str(out_dir / "alpha_history.json")
        return Derived(genotype, metrics, artifacts)


__all__ = ["DartsOptions", "DartsStrategy", "derive_within"]


def _qty(v: float) -> str:
    """A count as people write it: 1,000,000 (not 1e+06); fractions with 6 digits."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.6g}"
