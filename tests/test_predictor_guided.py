"""Predictor-guided searchers (neural-predictor, BANANAS): encodings, surrogate, NB201, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nas.errors import ConfigError, UnknownName
from nas.objectives import parse_objectives
from nas.searchers import SearchContext, build_strategy
from nas.searchers.predictor_guided import (
    MLPEnsemble,
    acquire,
    nb201_path_encoding,
    transform_targets,
)
from tests.conftest import require_data, run_cli

ACC = parse_objectives("accuracy")


def get_searcher(strategy, space, seed=0, budget=0, **options):
    return build_strategy(strategy, space, ACC, seed, options, SearchContext(budget=budget))


TABLE = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"


@pytest.fixture(scope="module")
def nb201():
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import load_table

    require_data(TABLE)
    return get_space("nb201"), {a: r["cifar10"] for a, r in load_table().items()}


def search(searcher, acc, budget):
    """Sequential ask/tell on the table; the accuracies in query order."""
    out = []
    for _ in range(budget):
        g = searcher.ask()
        out.append(acc[g.to_str()])
        searcher.tell(g, (out[-1],))
    return out


def test_path_encoding_of_nb201_cells():
    none = ("none",) * 6
    assert nb201_path_encoding(none).sum() == 0
    assert nb201_path_encoding(none).shape == (100,)
    conv = ("nor_conv_3x3",) * 6
    assert nb201_path_encoding(conv).sum() == 4  # every one of the 4 paths is alive
    # Only the direct edge 0->3 alive: one feature, in the first block of 4.
    direct = ("none", "none", "none", "skip_connect", "none", "none")
    enc = nb201_path_encoding(direct)
    assert enc.sum() == 1 and enc[:4].sum() == 1
    # A cut on edge 2<-1 kills the long path only.
    cut = ("nor_conv_3x3", "nor_conv_3x3", "none", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3")
    assert nb201_path_encoding(cut).sum() == 3 and nb201_path_encoding(cut)[36:].sum() == 0


def test_ensemble_fits_and_spreads():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (80, 12)).astype(np.float32)
    y = x @ rng.normal(size=12) + 0.5 * x[:, 0] * x[:, 1]
    model = MLPEnsemble(epochs=300).fit(x[:60], y[:60], seed=1)
    mean, std = model.predict(x[60:])
    assert np.corrcoef(mean, y[60:])[0, 1] > 0.9
    assert std.shape == (20,) and (std > 0).all()
    again = MLPEnsemble(epochs=300).fit(x[:60], y[:60], seed=1).predict(x[60:])[0]
    np.testing.assert_array_equal(mean, again)  # a pure function of data and seed


def test_acquisitions_and_targets():
    mean, std = np.array([1.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0])
    rng = np.random.default_rng(0)
    ei = acquire("ei", mean, std, best=1.0, rng=rng)
    assert ei.argmax() == 1 and ei[2] < 1e-6
    assert list(acquire("ucb", mean, std, 1.0, rng, ucb_beta=2.0)) == pytest.approx([1, 3, 0])
    with pytest.raises(ConfigError, match="unknown acquisition 'pi'"):
        acquire("pi", mean, std, 1.0, rng)
    t = transform_targets(np.array([10.0, 94.0, 93.0, 93.0]), "rank")
    assert t[0] < t[2] == t[3] < t[1]
    with pytest.raises(ConfigError, match="unknown encoding"):
        get_searcher("bananas", _space(), encoding="graph")


def _space():
    from nas.search_spaces import get_space

    return get_space("nb201")


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="acquisition"):
        get_searcher("bananas", _space(), acquisition="pi")
    with pytest.raises(ConfigError, match="n_train"):
        get_searcher("neural-predictor", _space(), n_train=1)
    with pytest.raises(ConfigError, match="path encoding exists for nb201 only"):
        from nas.search_spaces import get_space

        get_searcher("bananas", get_space("nbmacro"), encoding="path")
    # A predictor name is checked when the strategy is built, not after n_init trials.
    with pytest.raises(UnknownName, match="unknown predictor 'nope'"):
        get_searcher("bananas", _space(), predictor="nope")
    np = get_searcher("neural-predictor", _space(), budget=60, train_fraction=0.25)
    assert np.innermost.n_train == 15


@pytest.mark.parametrize("strategy", ["neural-predictor", "bananas"])
def test_beats_random_search_on_nb201(nb201, strategy):
    space, acc = nb201
    budget, n_random, seeds = 40, 20, range(3)
    options = {"n_init": n_random}
    if strategy == "neural-predictor":  # the GCN, with fewer epochs than published
        options = {"n_train": n_random, "predictor_options": {"epochs": 100}}
    ours = [search(get_searcher(strategy, space, s, **options), acc, budget) for s in seeds]
    rand = [search(get_searcher("random", space, s), acc, budget) for s in seeds]
    # The guided half of the budget proposes far better architectures than chance ...
    guided = np.mean([q[n_random:] for q in ours])
    assert guided > np.mean(rand) + 5.0 and guided > 90.0, (guided, np.mean(rand))
    # ... and finds a better best one (the one-shot Neural Predictor: at least on average).
    assert np.mean([max(q) for q in ours]) > np.mean([max(q) for q in rand])
    if strategy == "bananas":
        assert min(max(q) for q in ours) > max(max(q) for q in rand)


def test_asynchronous_asks_and_restore_with_outstanding_results(nb201):
    space, acc = nb201
    a = get_searcher("bananas", space, seed=1, batch_size=4, n_init=6)
    search(a, acc, 8)
    pending = [a.ask() for _ in range(3)]  # three workers busy, from the queue of a fit
    assert len({g.to_str() for g in pending}) == 3
    state = json.loads(json.dumps(a.state_dict()))
    b = get_searcher("bananas", space, seed=1, batch_size=4, n_init=6)
    b.load_state_dict(state)
    for s in (a, b):
        for g in pending:
            s.tell(g, (acc[g.to_str()],))
    assert search(a, acc, 6) == search(b, acc, 6)


def test_neural_predictor_restores_its_ranking(nb201):
    space, acc = nb201
    fast = {"epochs": 100}
    a = get_searcher("neural-predictor", space, seed=2, n_train=12, predictor_options=fast)
    search(a, acc, 15)  # 12 random, then 3 from the ranking of the whole space
    state = json.loads(json.dumps(a.state_dict()))
    assert len(json.dumps(state)) < 20_000  # the ranking is recomputed, not stored
    b = get_searcher("neural-predictor", space, seed=2, n_train=12, predictor_options=fast)
    b.load_state_dict(state)
    nxt = search(a, acc, 5)
    assert nxt == search(b, acc, 5)
    assert np.mean(nxt) > 90.0  # the top of the ranking is good, not random (mean ~ 83)


def test_cli_bananas_on_the_nb201_table(tmp_path):
    require_data(TABLE)
    r = run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        "bananas",
        "--evaluator",
        "benchmark",
        "--budget",
        "16",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["n_trials"] == 16
    assert out["best_metrics"]["accuracy"] > 92.0
