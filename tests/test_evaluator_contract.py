"""The contract every registered evaluator satisfies (Optuna's sampler/storage suites are the
model): seeded determinism, a failure is a failed result, it survives the trip to a worker
process (cloudpickle, as Ray ships it), and bad settings are typed errors before any work.

A plugin's evaluator joins this suite by adding a row to ``CASES`` (space, dataset, options
that keep it cheap); an evaluator registered without a row fails
``test_every_registered_evaluator_has_a_case``.
"""

from __future__ import annotations

import math
from pathlib import Path

import cloudpickle
import pytest
from nas.search_spaces import get_space

from nas import registry
from nas.errors import ConfigError, NasError
from nas.evaluators import get_evaluator
from nas.execution import evaluate_safely
from tests.conftest import require_data

# name -> (space, dataset, options that keep one evaluation cheap, data it needs)
CASES = {
    "train": ("nb201", "digits", {"steps": 3, "batch_size": 32}, None),
    "benchmark": ("nb201", "cifar10", {}, "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"),
    "synthetic": ("nb201", None, {"steps": 1}, None),
    "supernet": ("nbmacro", "digits", {"steps": 2, "batch_size": 16, "calib_batches": 1}, None),
}


def make(name: str, seed: int = 0, **override):
    space_name, dataset, options, data = CASES[name]
    if data:
        require_data(data)
    space = get_space(space_name)
    return space, get_evaluator(name, space, dataset, seed=seed, **{**options, **override})


HEAVY = {"supernet"}  # trains a supernet per evaluator: its determinism checks run in test-slow


def cases(*, heavy_is_slow: bool) -> list:
    return [
        pytest.param(n, marks=pytest.mark.slow) if heavy_is_slow and n in HEAVY else n
        for n in sorted(CASES)
    ]


def finite(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float) and not k.endswith("seconds")}


def test_every_registered_evaluator_has_a_case():
    assert set(registry.names("evaluators")) <= set(CASES)


@pytest.mark.parametrize("name", cases(heavy_is_slow=True))
def test_seeded_determinism_and_declared_metrics(name, tmp_path):
    space, a = make(name, seed=1)
    g = space.smallest() or space.sample(__import__("numpy").random.default_rng(0))
    ra = a.evaluate(g, tmp_path / "a")
    _, b = make(name, seed=1)
    rb = b.evaluate(g, tmp_path / "b")
    assert ra.ok and rb.ok, (ra.error, rb.error)
    assert finite(ra.metrics) == finite(rb.metrics)
    for metric in a.metrics:  # what it declares, it measures
        assert metric in ra.metrics and math.isfinite(ra.metrics[metric])
    assert ra.cost["params"] > 0 and ra.cost == a.cost(g)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_failure_is_a_failed_result_with_its_error_file(name, tmp_path):
    _, ev = make(name)
    foreign = get_space("nasnet").sample(__import__("numpy").random.default_rng(0))
    workdir = tmp_path / "t"
    workdir.mkdir()
    result = evaluate_safely(ev, foreign, workdir)
    assert not result.ok and result.error and "\n" not in result.error
    assert (workdir / "error.txt").exists()


@pytest.mark.parametrize("name", cases(heavy_is_slow=True))
def test_it_travels_to_a_worker_and_scores_the_same(name, tmp_path):
    space, ev = make(name, seed=2)
    g = space.smallest() or space.sample(__import__("numpy").random.default_rng(0))
    there = cloudpickle.loads(cloudpickle.dumps(ev))
    assert there.settings() == ev.settings()
    here, away = ev.evaluate(g, tmp_path / "a"), there.evaluate(g, tmp_path / "b")
    assert finite(here.metrics) == finite(away.metrics)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_settings_are_typed_errors(name):
    with pytest.raises(ConfigError, match="unknown key 'no_such_option'"):
        make(name, no_such_option=1)
    space_name = CASES[name][0]
    with pytest.raises(NasError):
        get_evaluator(name, get_space(space_name), "no-such-dataset")


def test_out_of_range_options_are_refused_before_training():
    for bad in ({"steps": 0}, {"steps": 10**20}, {"steps": -1}, {"lr": -1.0}, {"batch_size": 0}):
        with pytest.raises(ConfigError):
            make("train", **bad)
    assert Path  # the train evaluator never started: nothing to clean up
