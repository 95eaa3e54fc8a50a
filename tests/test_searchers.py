"""The contract every searcher satisfies, on a toy space with a known optimum and on NB201."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from nas.errors import InvalidGenotype, UnknownName
from nas.evaluators.base import EvalResult
from nas.graph import ArchGraph
from nas.searchers import STRATEGIES, Deduplicated, get_searcher
from nas.searchers.base import Searcher
from nas.space import Genotype, SearchSpace


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


def score(g: Bits) -> EvalResult:
    return EvalResult(metrics={"accuracy": 10.0 * sum(g.bits)})


def run(searcher, n: int) -> list[Bits]:
    seen = []
    for _ in range(n):
        g = searcher.ask()
        searcher.tell(g, score(g))
        seen.append(g)
    return seen


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_restored_state_continues_identically(strategy):
    space = OneMax()
    a = get_searcher(strategy, space, seed=3)
    run(a, 25)
    state = json.loads(json.dumps(a.state_dict()))  # must be JSON-serialisable
    b = get_searcher(strategy, space, seed=3)
    b.load_state_dict(state)
    assert run(a, 10) == run(b, 10)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_search(strategy):
    assert run(get_searcher(strategy, OneMax(), seed=5), 20) == run(
        get_searcher(strategy, OneMax(), seed=5), 20
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deduplicated_proposals(strategy):
    seen = run(get_searcher(strategy, OneMax(), seed=0), 60)
    assert len(set(seen)) == 60


class _Stuck(Searcher):
    """Proposes one genotype for ever, like a fully converged population."""

    name = "stuck"

    def ask(self):
        return Bits((1,) * 10)


def test_deduplicated_explores_when_the_inner_searcher_only_repeats():
    dedup = Deduplicated(_Stuck(OneMax(), seed=0), max_tries=5)
    proposals = run(dedup, 30)
    assert len(set(proposals)) == 30  # never a repeat while the space has unseen genotypes
    assert dedup.fallbacks == 29  # all but the first came from the random fallback
    state = json.loads(json.dumps(dedup.state_dict()))
    restored = Deduplicated(_Stuck(OneMax(), seed=0), max_tries=5)
    restored.load_state_dict(state)
    assert run(dedup, 5) == run(restored, 5)


@pytest.mark.parametrize("strategy", ["evolution", "tpe"])
def test_finds_the_optimum_of_onemax(strategy):
    hits = 0
    for seed in range(3):
        s = get_searcher(
            strategy,
            OneMax(),
            seed=seed,
            **({"population_size": 10, "sample_size": 3} if strategy == "evolution" else {}),
        )
        best = max(sum(g.bits) for g in run(s, 80))
        hits += best == 10
    assert hits >= 2


def test_random_search_is_uniform():
    seen = run(get_searcher("random", OneMax(), seed=0, dedup=False), 400)
    ones = np.mean([sum(g.bits) for g in seen])
    assert 4.5 < ones < 5.5


def test_failed_results_never_become_parents():
    s = get_searcher("evolution", OneMax(), seed=0, dedup=False, population_size=5, sample_size=5)
    for _ in range(20):
        g = s.ask()
        s.tell(g, EvalResult.failure("boom") if sum(g.bits) > 3 else score(g))
    assert all(sum(g.bits) <= 3 for g, _ in s.population)


def test_unknown_strategy():
    with pytest.raises(UnknownName, match="unknown strategy 'annealing'"):
        get_searcher("annealing", OneMax())


def nb201_queries_to_top(strategy: str, seed: int, budget: int = 100) -> float:
    from search_spaces import get_space
    from search_spaces.nb201 import load_table
    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    space = get_space("nb201")
    table = load_table()
    s = get_searcher(strategy, space, seed=seed)
    best = 0.0
    for _ in range(budget):
        g = s.ask()
        acc = table[g.to_str()]["cifar10"]
        s.tell(g, EvalResult(metrics={"accuracy": acc}))
        best = max(best, acc)
    return best


def test_evolution_reaches_the_top_percent_of_nb201_on_most_seeds():
    from search_spaces.nb201 import load_table
    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    accs = sorted((r["cifar10"] for r in load_table().values()), reverse=True)
    top1 = accs[len(accs) // 100 - 1]
    hits = sum(nb201_queries_to_top("evolution", seed) >= top1 for seed in range(10))
    assert hits >= 6, f"{hits}/10 seeds reached the top 1% (>= {top1:.2f}%)"


def test_resume_tells_the_searcher_a_result_stored_after_its_state(tmp_path):
    """A driver killed between storing a trial's result and saving the searcher's state:
    on resume the searcher still learns that result (every finished trial is told once)."""
    import sqlite3

    from nas.evaluators import get_evaluator
    from nas.search import run_search
    from search_spaces import get_space

    space = get_space("nb201")
    evaluator = get_evaluator("synthetic", space)
    run = tmp_path / "run"
    run_search(space, get_searcher("evolution", space, seed=0), evaluator, 3, out_dir=run, progress=False)  # fmt: skip
    db = sqlite3.connect(run / "study.db")

    def state() -> dict:
        row = db.execute(
            "select value_json from study_user_attributes where key='searcher_state'"
        ).fetchone()
        return json.loads(row[0])

    saved = state()
    assert sorted(saved["trials_told"]) == [0, 1, 2] and saved["inner"]["n_told"] == 3
    # The state as it was before trial 2's result reached the searcher.
    saved["trials_told"].remove(2)
    saved["inner"]["n_told"] = 2
    db.execute(
        "update study_user_attributes set value_json=? where key='searcher_state'",
        (json.dumps(saved),),
    )
    db.commit()
    run_search(space, get_searcher("evolution", space, seed=0), evaluator, 5, out_dir=run, resume=True, progress=False)  # fmt: skip
    after = state()
    assert sorted(after["trials_told"]) == [0, 1, 2, 3, 4]
    assert after["inner"]["n_told"] == 5
