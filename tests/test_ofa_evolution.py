"""OFA's specialisation strategy: predictor fitted on scored subnets, evolution on it under
the limits, then the best predicted subnets proposed."""

from __future__ import annotations

import json

import numpy as np
from nas.search_spaces import get_space

from nas.objectives import parse_objectives
from nas.searchers.base import SearchContext
from nas.searchers.ofa_evolution import OFAEvolution
from tests.conftest import run_cli


def _truth(g) -> float:
    """A known score: small kernels and large expand ratios are good."""
    return -float(np.sum(g.ks)) + 0.5 * float(np.sum(g.e))


def test_predictor_guided_proposals_beat_the_random_sample_within_the_limit():
    space = get_space("ofa")
    limit = 80  # on a stand-in cost: the sum of the depths and expand ratios

    def cost(g):
        return {"latency": float(sum(g.e) + sum(g.d))}

    ctx = SearchContext(budget=40, limits={"latency": limit}, cost=cost)
    opts = {"samples": 30, "fit_steps": 300, "population": 24, "generations": 6, "hidden": 64}
    s = OFAEvolution(space, parse_objectives("accuracy"), seed=0, options=opts, context=ctx)
    scores = []
    for _ in range(40):
        g = s.ask()
        assert cost(g)["latency"] <= limit
        v = _truth(g)
        s.tell(g, (v,))
        scores.append(v)
    assert s.fitted_at == 30 and len(s.predicted) > 30
    assert np.mean(scores[30:]) > np.max(scores[:30])  # proposals beat the whole sample
    assert len(set(map(str, s.scored))) == 40  # no subnet proposed twice


def test_ofa_evolution_runs_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "search", "--space", "ofa", "--strategy", "ofa-evolution", "--evaluator", "synthetic",
        "--budget", "10", "--seed", "0", "--out", str(out), "--no-progress", "--json",
        "--set", "strategy_options.samples=6", "--set", "strategy_options.generations=2",
        "--set", "strategy_options.population=8", "--set", "strategy_options.fit_steps=50",
        "--set", "strategy_options.hidden=16", "--max-flops", "400M",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_trials"] == 10 and res["n_failed"] == 0
    assert res["best_cost"]["flops"] <= 400e6


def test_bignas_coarse_to_fine_grid_then_mutations_of_the_best():
    from nas.searchers.coarse_to_fine import CoarseToFine

    space = get_space("bignas")

    def cost(g):
        return {"flops": float(g.r * sum(g.d))}

    limit = 256 * 12
    ctx = SearchContext(budget=40, limits={"flops": limit}, cost=cost)
    s = CoarseToFine(space, parse_objectives("accuracy"), seed=0,
                     options={"coarse": 12}, context=ctx)  # fmt: skip
    assert len(s.grid) == 12 and all(cost(g)["flops"] <= limit for g in s.grid)
    # a coarse candidate scales the whole network uniformly: one relative level per kind
    # of decision (smallest, middle or largest widths, depths, kernels, ...)
    import itertools

    uniform = {
        s.at_levels(dict(zip(s.groups, q, strict=True)))
        for q in itertools.product((0.0, 0.5, 1.0), repeat=len(s.groups))
    }
    assert set(s.grid) <= uniform and space.known()["min"].__class__ is type(s.grid[0])
    truth = {}
    for _ in range(40):
        g = s.ask()
        assert cost(g)["flops"] <= limit and g not in truth
        truth[g] = float(sum(e * (-1) ** i for i, e in enumerate(g.e)))  # not uniform
        s.tell(g, (truth[g],))
    coarse_best = max(truth[g] for g in s.grid)
    assert s.best[1] > coarse_best  # the fine stage improved on the grid's best


def test_a_resolution_the_latency_table_lacks_is_outside_the_limit(tmp_path):
    """OFA's tables price a few resolutions: another one costs infinite latency (so a
    latency limit excludes it) and its trial fails, saying so, before any training."""
    from dataclasses import replace

    from nas.search_spaces.ofa.latency import LatencyTable

    from nas.evaluators.oneshot import SupernetEvaluator

    table = LatencyTable({128: {}}, "two entries").save(tmp_path / "table.json")
    space = get_space("ofa")
    ev = SupernetEvaluator(space, "digits", run_dir=tmp_path, options={"latency_table": str(table)})
    g = replace(space.known()["min"], resolution=132)
    assert ev.cost(g)["latency"] == float("inf")
    r = ev.evaluate(g)
    assert not r.ok and "no entries for resolution 132" in r.error
    assert not (tmp_path / "supernet").exists()  # nothing was trained
