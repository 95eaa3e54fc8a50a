"""Pretrained predictors by name, and the labels that say where a prediction comes from."""

from __future__ import annotations

import numpy as np
import pytest

from nas.errors import ConfigError, DataError, UnknownName
from tests.conftest import require_data

NB201 = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "pre-cache"))


def test_pretrained_gennape_by_name_predicts_without_fitting():
    from nas.predictors import get_predictor, load_predictor
    from nas.predictors.features import ArchRef
    from nas.predictors.pretrained import command, names

    assert "pretrained:gennape" in names()
    assert command("pretrained:gennape").startswith("nas predictor fit --predictor gennape")
    p = get_predictor("pretrained:gennape", seed=3)
    q = load_predictor("pretrained:gennape")
    assert p.fitted and p.from_pretrained == "gennape" and p.seed == 3
    refs = [ArchRef("nb201", "best_cifar10", "cifar10"), ArchRef("nbmacro", "22222222", "cifar10")]
    refs = [ArchRef(r.space, _native(r.space, r.arch), r.dataset) for r in refs]
    mean, std = p.predict(refs)
    np.testing.assert_array_equal(mean, q.predict(refs)[0])
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    dec = p.decompose(refs)
    assert np.all(dec.share == 1.0)  # both families are among those it was trained on
    with pytest.raises(ConfigError, match="takes no options"):
        get_predictor("pretrained:gennape", steps=5)
    with pytest.raises(UnknownName, match="pretrained:gennape"):
        get_predictor("pretrained:nothing")


def _native(space: str, arch: str) -> str:
    from nas.search_spaces import get_space

    s = get_space(space)
    return s.known()[arch].to_str() if arch in s.known() else s.parse(arch).to_str()


def test_missing_pretrained_file_says_how_to_make_it(monkeypatch, tmp_path):
    from nas.predictors import pretrained

    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    with pytest.raises(DataError, match="nas predictor fit --predictor gennape"):
        pretrained.load("pretrained:gennape")


def test_pretrained_evaluation_leaves_out_its_training_architectures():
    require_data(NB201)
    from nas.predictors.data import load_split, train_archs
    from nas.predictors.pretrained import recipe

    from nas import api

    out = api.evaluate_predictor("pretrained:gennape", None, "nb201:cifar10:100", seed=5)
    assert out["predictor"] == "pretrained:gennape" and out["n_train"] == 0
    assert out["fit_seconds"] < 0.01 and out["n_pretrain"] > 0
    assert out["basis"] == "prior+learned" and out["learned_share"] == 1.0
    assert {"prior_only", "learned_only"} <= set(out) and out["kendall_tau"] > 0.3
    seen = train_archs(recipe("gennape")[1].train, recipe("gennape")[1].seed)
    _, test = load_split([], "nb201:cifar10:100", seed=5, exclude=seen)
    assert not {g.arch for g in test.graphs} & seen["nb201"]


@pytest.mark.slow
def test_fit_of_a_pretrained_predictor_fine_tunes_it():
    require_data(NB201)
    from nas.predictors import get_predictor
    from nas.predictors.data import load_spec

    p = get_predictor("pretrained:gennape")
    before = p.families.copy()
    tune = load_spec("nb201:cifar10:12", seed=9)
    p.fit(tune.graphs, tune.y, tune.groups)  # a few steps on top, not a new model
    assert p.from_pretrained == "gennape" and p.families == before
    assert p.label_stats["nb201"][0] == pytest.approx(float(np.mean(tune.y)))


def test_a_gennape_prediction_does_not_depend_on_the_graphs_predicted_with_it():
    """Alone, in a batch of 40, every second one, reversed: the same bits (inference batches
    have fixed shapes per graph size, the prior scores in fixed blocks)."""
    from nas.predictors.base import get_predictor
    from nas.search_spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(5)
    graphs = [space.to_graph(space.sample(rng), "cifar10") for _ in range(40)]
    p = get_predictor("pretrained:gennape")
    batch = p.predict(graphs)[0]
    np.testing.assert_array_equal(
        np.concatenate([p.predict([g])[0] for g in graphs[:6]]), batch[:6]
    )
    np.testing.assert_array_equal(p.predict(graphs[::2])[0], batch[::2])
    np.testing.assert_array_equal(p.predict(graphs[::-1])[0], batch[::-1])
