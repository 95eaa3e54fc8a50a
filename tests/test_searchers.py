"""The contract every sample-based strategy satisfies, on a toy space with a known optimum.

Every registered sample-based strategy (built-in or a plugin's) runs the same suite: seeded
determinism, restoring (by snapshot and by replaying asks and tells) continues identically,
proposals are deduplicated, options are typed, objectives are honoured in the direction the
study asks for, and more objectives than a strategy takes are refused with the names of the
strategies that can.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from nas import registry
from nas.errors import ConfigError, InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.objectives import Objective
from nas.searchers import Deduplicated, build_strategy, strategy_class
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace

ACC = (Objective("accuracy", "maximize"),)
SAMPLE = [n for n in registry.names("strategies") if strategy_class(n).kind == "sample"]
SMALL = {  # options that keep the toy runs short
    "evolution": {"population": 10, "tournament": 3},
    "nsga2": {"population": 8},
    "bananas": {"n_init": 6, "n_random": 20, "n_mutations": 5, "epochs": 50},
    "neural-predictor": {"n_train": 10, "pool_size": 1024, "predictor_options": {"epochs": 100}},
    "spos-evolution": {"population": 10, "select_num": 3, "mutation_num": 4, "crossover_num": 4},
    "ofa-evolution": {
        "samples": 10,
        "hidden": 16,
        "fit_steps": 100,
        "population": 12,
        "generations": 4,
        "refit_every": 10,
    },
    "coarse-to-fine": {"coarse": 8},
}


@dataclass(frozen=True)
class Bits(Genotype):
    bits: tuple[int, ...]
    space_name: ClassVar[str] = "onemax"

    def to_str(self) -> str:
        return "".join(map(str, self.bits))


class OneMax(SearchSpace):
    """Ten binary decisions; the score is the number of ones (optimum: all ones)."""

    name = "onemax"

    def choices(self):
        return [(f"b{i}", 2) for i in range(10)]

    def from_indices(self, indices):
        return Bits(tuple(int(i) for i in indices))

    def to_indices(self, genotype):
        return list(genotype.bits)

    def parse(self, text):
        if len(text) != 10 or set(text) - {"0", "1"}:
            raise InvalidGenotype(f"bad bits {text!r}")
        return Bits(tuple(int(c) for c in text))

    def to_graph(self, genotype, dataset=None):
        return ArchGraph.sequential((4,), [("dense", {"out_features": 1 + sum(genotype.bits)})])


def make(strategy: str, seed: int = 0, objectives=ACC, dedup: bool = True, **options):
    opts = {**SMALL.get(strategy, {}), **options}
    return build_strategy(strategy, OneMax(), objectives, seed=seed, options=opts, dedup=dedup)


def run(searcher, n: int, sign: float = 1.0, log: list | None = None) -> list[Bits]:
    """``n`` asks and tells; the (oriented) value is ``sign`` x the number of ones."""
    seen = []
    for _ in range(n):
        g = searcher.ask()
        values = (sign * sum(g.bits),)
        searcher.tell(g, values)
        seen.append(g)
        if log is not None:
            log.append((g, values))
    return seen


@pytest.mark.parametrize("strategy", SAMPLE)
def test_same_seed_same_search(strategy):
    assert run(make(strategy, seed=5), 20) == run(make(strategy, seed=5), 20)


@pytest.mark.parametrize("strategy", SAMPLE)
def test_restored_by_snapshot_or_replay_continues_identically(strategy):
    a = make(strategy, seed=3)
    events: list = []
    run(a, 25, log=events)
    if a.snapshots:
        b = make(strategy, seed=3)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))  # JSON-serialisable
    else:
        b = make(strategy, seed=3)
        for g, values in events:  # replay: the same asks and tells in the same order
            assert b.ask() == g
            b.tell(g, values)
    assert run(a, 10) == run(b, 10)


@pytest.mark.parametrize("strategy", SAMPLE)
def test_deduplicated_proposals(strategy):
    seen = run(make(strategy), 60)
    assert len(set(seen)) == 60


@pytest.mark.parametrize("strategy", [s for s in SAMPLE if s != "random"])
def test_optimises_the_direction_it_is_told(strategy):
    """Told larger-is-better values of -ones (a cost), it must find few ones, and told +ones,
    many: a strategy that optimised a metric of its own choosing fails one of the two."""
    low = min(sum(g.bits) for g in run(make(strategy, seed=1), 60, sign=-1.0)[30:])
    high = max(sum(g.bits) for g in run(make(strategy, seed=1), 60, sign=+1.0)[30:])
    assert low <= 2 and high >= 8, (low, high)


@pytest.mark.parametrize("strategy", SAMPLE)
def test_options_are_typed_and_unknown_keys_refused(strategy):
    with pytest.raises(ConfigError, match="unknown key 'no_such_option'"):
        make(strategy, no_such_option=1)


def test_more_objectives_than_a_strategy_takes_are_refused_with_the_ones_that_can():
    two = (Objective("accuracy", "maximize"), Objective("flops", "minimize"))
    with pytest.raises(ConfigError) as e:
        build_strategy("bananas", OneMax(), two)
    message = str(e.value)
    assert "'bananas' optimises 1 objective" in message
    for name in ("evolution", "nsga2", "random", "tpe"):
        assert name in message
    for name in ("bananas", "neural-predictor", "spos-evolution", "darts"):
        assert f"'{name}'" not in message.split("use one of")[1]
    nsga2 = build_strategy("nsga2", OneMax(), two, options={"population": 8})
    for _ in range(5):
        g = nsga2.ask()
        nsga2.tell(g, (float(sum(g.bits)), -float(sum(g.bits))))


class _Stuck(Searcher):
    """Proposes one genotype for ever, like a fully converged population."""

    name = "stuck"

    def ask(self):
        return Bits((1,) * 10)


def test_deduplicated_explores_when_the_inner_searcher_only_repeats():
    dedup = Deduplicated(_Stuck(OneMax(), ACC, seed=0), max_tries=5)
    proposals = run(dedup, 30)
    assert len(set(proposals)) == 30  # never a repeat while the space has unseen genotypes
    assert dedup.fallbacks == 29  # all but the first came from the random fallback
    state = json.loads(json.dumps(dedup.state_dict()))
    restored = Deduplicated(_Stuck(OneMax(), ACC, seed=0), max_tries=5)
    restored.load_state_dict(state)
    assert run(dedup, 5) == run(restored, 5)


@pytest.mark.parametrize("strategy", ["evolution", "tpe"])
def test_finds_the_optimum_of_onemax(strategy):
    hits = sum(max(sum(g.bits) for g in run(make(strategy, seed=s), 80)) == 10 for s in range(3))
    assert hits >= 2


def test_random_search_is_uniform():
    seen = run(make("random", dedup=False), 400)
    assert 4.5 < np.mean([sum(g.bits) for g in seen]) < 5.5


def test_failed_results_never_become_parents():
    s = make("evolution", dedup=False, population=5, tournament=5)
    for _ in range(20):
        g = s.ask()
        s.tell(g, None if sum(g.bits) > 3 else (float(sum(g.bits)),))
    assert all(sum(g.bits) <= 3 for g, _ in s.population)


def test_unknown_strategy():
    with pytest.raises(UnknownName, match="unknown strategy 'annealing'"):
        build_strategy("annealing", OneMax(), ACC)


def test_evolution_reaches_the_top_percent_of_nb201_on_most_seeds():
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import load_table

    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    table = load_table()
    accs = sorted((r["cifar10"] for r in table.values()), reverse=True)
    top1 = accs[len(accs) // 100 - 1]
    space = get_space("nb201")
    hits = 0
    for seed in range(10):
        s = build_strategy("evolution", space, ACC, seed=seed)
        best = 0.0
        for _ in range(100):
            g = s.ask()
            acc = table[g.to_str()]["cifar10"]
            s.tell(g, (acc,))
            best = max(best, acc)
        hits += best >= top1
    assert hits >= 6, f"{hits}/10 seeds reached the top 1% (>= {top1:.2f}%)"
