"""Several objectives: parsing, Pareto fronts, NSGA-II and Pareto-tournament evolution, the CLI."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from nas.search_spaces import get_space

from nas import api
from nas.errors import ConfigError, StorageError, UnknownName
from nas.evaluators.base import EvalResult
from nas.evaluators.synthetic import synthetic_accuracy
from nas.objectives import dominates, non_dominated, orient, parse_objectives
from nas.searchers import build_strategy
from tests.conftest import require_data, run_cli

TWO = parse_objectives("accuracy,flops")
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
        searcher.tell(g, orient(EvalResult(metrics={"accuracy": acc}, cost={"flops": flops}), TWO))
        seen.append(g.to_str())
    return seen


@pytest.mark.parametrize("strategy", ["nsga2", "evolution", "tpe"])
def test_multi_objective_searchers_restore_exactly(strategy):
    space = get_space("nb201")
    opts = {"evolution": {"population": 8, "tournament": 4}, "nsga2": {"population": 8}}
    a = build_strategy(strategy, space, TWO, seed=4, options=opts.get(strategy))
    asked = _tell_table(a, space, 30)
    b = build_strategy(strategy, space, TWO, seed=4, options=opts.get(strategy))
    if a.snapshots:
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    else:
        assert _tell_table(b, space, 30) == asked  # replaying the same tells
    assert _tell_table(a, space, 12) == _tell_table(b, space, 12)


def test_pareto_evolution_breeds_from_the_front():
    space = get_space("nb201")
    s = build_strategy(
        "evolution", space, TWO, seed=0, dedup=False, options={"population": 6, "tournament": 6}
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
        build_strategy("annealing", get_space("nb201"), TWO)


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
        res = api.search(
            "nb201", strategy, "benchmark", 30, dataset="cifar10", seed=2, out=run,
            objectives=["accuracy", "flops"], progress=False,
        ).to_json()  # fmt: skip
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
    common = dict(dataset="cifar10", seed=1, progress=False, out=tmp_path / "run")
    res = api.search(
        "nb201", "nsga2", "benchmark", 12, objectives="accuracy,flops", max_flops=60e6, **common
    )
    assert res.pareto and all(f["values"]["flops"] <= 60e6 for f in res.pareto)
    assert (tmp_path / "run" / "pareto.png").exists()
    # Resuming a two-objective study with one objective is refused.
    with pytest.raises(StorageError, match=r"optimises \['maximize', 'minimize'\]"):
        api.search("nb201", "nsga2", "benchmark", 20, resume=True, max_flops=60e6, **common)
    # An objective the evaluator does not measure is refused before any trial.
    with pytest.raises(ConfigError, match="objective 'latency' is not measured by the benchmark"):
        api.search("nb201", "random", "benchmark", 2, objectives="accuracy,latency",
                   **{**common, "out": tmp_path / "lat"})  # fmt: skip
    assert not (tmp_path / "lat" / "study.db").exists()
    with pytest.raises(ConfigError, match="objective 'speed' is not measured"):
        api.search("nb201", "random", "benchmark", 2, objectives="speed",
                   **{**common, "out": tmp_path / "lat"})  # fmt: skip
