"""Several objectives: parsing, Pareto fronts, NSGA-II and Pareto-tournament evolution, the CLI."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from nas.errors import ConfigError, NasError, StorageError, UnknownName
from nas.evaluators.base import EvalResult
from nas.evaluators.synthetic import synthetic_accuracy
from nas.objectives import dominates, non_dominated, parse_objectives
from nas.searchers import get_searcher
from search_spaces import get_space
from tests.conftest import require_data, run_cli

TABLE = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"


def test_objectives_parse_with_directions():
    objs = parse_objectives("accuracy,flops")
    assert [(o.name, o.direction) for o in objs] == [
        ("accuracy", "maximize"),
        ("flops", "minimize"),
    ]
    assert parse_objectives("params:max")[0].direction == "maximize"
    assert parse_objectives(None)[0].name == "accuracy"
    for bad, msg in (("accuracy,,flops", "comma-separated"), ("flops:low", "':min' or ':max'")):
        with pytest.raises(ConfigError, match=msg):
            parse_objectives(bad)
    with pytest.raises(ConfigError, match="twice"):
        parse_objectives("flops,flops")
    r = EvalResult(metrics={"accuracy": 90.0}, cost={"flops": 5.0})
    assert [o.value(r) for o in objs] == [90.0, 5.0]
    assert parse_objectives("latency")[0].value(r) is None


def test_non_dominated_sorting():
    pts = [(1, 5), (2, 4), (2, 4), (1, 1), (3, 0), (0, 6), (2, 3)]
    assert non_dominated(pts) == [0, 1, 2, 4, 5]  # duplicates both stay; (1,1),(2,3) dominated
    assert dominates((2, 4), (2, 3)) and not dominates((2, 4), (2, 4))
    rng = np.random.default_rng(0)
    cloud = rng.random((200, 3))
    front = set(non_dominated(cloud))
    for i in range(200):
        dominated = any(dominates(cloud[j], cloud[i]) for j in range(200))
        assert (i in front) == (not dominated)


def _tell_table(searcher, space, n):
    """A synthetic two-objective problem: accuracy grows with ops, FLOPs too."""
    seen = []
    for _ in range(n):
        g = searcher.ask()
        idx = space.to_indices(g)
        acc = 5.0 * sum(idx) + synthetic_accuracy(g.to_str()) / 10
        flops = 1.0 + sum(i * i for i in idx)
        searcher.tell(g, EvalResult(metrics={"accuracy": acc}, cost={"flops": flops}))
        seen.append(g.to_str())
    return seen


@pytest.mark.parametrize("strategy", ["nsga2", "evolution", "tpe"])
def test_multi_objective_searchers_restore_exactly(strategy):
    space = get_space("nb201")
    opts = {"objectives": ["accuracy", "flops"]}
    if strategy == "evolution":
        opts.update(population_size=8, sample_size=4)
    if strategy == "nsga2":
        opts["population_size"] = 8
    a = get_searcher(strategy, space, seed=4, **opts)
    _tell_table(a, space, 30)
    state = json.loads(json.dumps(a.state_dict()))
    b = get_searcher(strategy, space, seed=4, **opts)
    b.load_state_dict(state)
    assert _tell_table(a, space, 12) == _tell_table(b, space, 12)


def test_pareto_evolution_breeds_from_the_front():
    space = get_space("nb201")
    s = get_searcher(
        "evolution",
        space,
        seed=0,
        dedup=False,
        objectives=["accuracy", "flops"],
        population_size=6,
        sample_size=6,
    )
    _tell_table(s, space, 6)
    front = {s.population[i][0] for i in non_dominated([m[1] for m in s.population])}
    # With the whole population in the tournament, every child mutates a front member.
    for _ in range(20):
        child = s.ask()
        parents = [
            g
            for g, _ in s.population
            if sum(
                a != b for a, b in zip(space.to_indices(g), space.to_indices(child), strict=True)
            )
            == 1
        ]
        assert any(p in front for p in parents)


def test_unknown_strategy_with_objectives_is_still_unknown():
    with pytest.raises(UnknownName, match="unknown strategy 'annealing'"):
        get_searcher("annealing", get_space("nb201"), objectives=["accuracy", "flops"])


def _search(tmp_path, strategy, *extra, budget=30, name="run"):
    return run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        strategy,
        "--evaluator",
        "benchmark",
        "--dataset",
        "cifar10",
        "--budget",
        str(budget),
        "--seed",
        "2",
        "--objectives",
        "accuracy,flops",
        "--out",
        str(tmp_path / name),
        "--no-progress",
        *extra,
    )


@pytest.mark.parametrize("strategy", ["nsga2", "evolution"])
def test_two_objective_search_returns_pareto_front_json_and_plot(tmp_path, strategy):
    require_data(TABLE)
    run = tmp_path / "run"
    if strategy == "nsga2":  # through the CLI, printed summary
        out = _search(tmp_path, strategy)
        assert out.returncode == 0, out.stderr
        assert "Pareto front (accuracy max, flops min)" in out.stdout
        res = json.loads((run / "result.json").read_text())
    else:  # through the Python API (same loop, no process start)
        from nas.evaluators import get_evaluator
        from nas.search import run_search

        space = get_space("nb201")
        res = run_search(
            space,
            get_searcher(strategy, space, seed=2, objectives=["accuracy", "flops"]),
            get_evaluator("benchmark", space, "cifar10"),
            30,
            out_dir=run,
            objectives=["accuracy", "flops"],
            progress=False,
        ).to_json()
    assert res["objectives"] == [
        {"name": "accuracy", "direction": "maximize"},
        {"name": "flops", "direction": "minimize"},
    ]
    front = res["pareto"]
    assert front and res["n_trials"] == 30
    con = sqlite3.connect(run / "study.db")
    directions = con.execute("select direction from study_directions order by objective")
    assert [d for (d,) in directions] == ["MAXIMIZE", "MINIMIZE"]
    # The front is exactly the non-dominated set of the stored trials (by their two values).
    values = {}
    for number, objective, value in con.execute(
        "select t.number, v.objective, v.value from trials t join trial_values v using(trial_id) "
        "where t.state='COMPLETE'"
    ):
        values.setdefault(number, [0.0, 0.0])[objective] = value
    numbers = sorted(values)
    expected = {numbers[i] for i in non_dominated([(values[n][0], -values[n][1]) for n in numbers])}
    assert {f["trial"] for f in front} == expected
    for f in front:
        assert f["values"] == {"accuracy": values[f["trial"]][0], "flops": values[f["trial"]][1]}
        assert f["values"]["accuracy"] == f["metrics"]["accuracy"]
    accs = [f["values"]["accuracy"] for f in front]
    assert accs == sorted(accs, reverse=True)
    assert json.loads((run / "pareto.json").read_text())["front"] == front
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "pareto.png").stat().st_size > 5000


def test_constraints_objective_mismatch_and_missing_objective(tmp_path):
    require_data(TABLE)
    from nas.evaluators import get_evaluator
    from nas.search import run_search
    from nas.searchers import Constrained

    space = get_space("nb201")
    evaluator = get_evaluator("benchmark", space, "cifar10")
    searcher = Constrained(
        get_searcher("nsga2", space, seed=1, objectives=["accuracy", "flops"]),
        evaluator.cost,
        {"flops": 60e6},
    )
    res = run_search(
        space,
        searcher,
        evaluator,
        12,
        out_dir=tmp_path / "run",
        objectives="accuracy,flops",
        progress=False,
    )
    assert res.pareto and all(f["values"]["flops"] <= 60e6 for f in res.pareto)
    assert (tmp_path / "run" / "pareto.png").exists()
    # Resuming a two-objective study with one objective is refused.
    with pytest.raises(StorageError, match=r"optimises \['maximize', 'minimize'\]"):
        run_search(
            space,
            get_searcher("nsga2", space, seed=1),
            evaluator,
            20,
            out_dir=tmp_path / "run",
            resume=True,
            progress=False,
        )
    # An objective the evaluator does not measure fails every trial, with the reason stored.
    with pytest.raises(NasError, match="every trial"):
        run_search(
            space,
            get_searcher("random", space),
            evaluator,
            2,
            out_dir=tmp_path / "lat",
            objectives="accuracy,latency",
            progress=False,
        )
    errors = [
        json.loads(v)
        for (v,) in sqlite3.connect(tmp_path / "lat" / "study.db").execute(
            "select value_json from trial_user_attributes where key='error'"
        )
    ]
    assert errors == ["objective(s) ['latency'] not measured by the evaluator"] * 2
