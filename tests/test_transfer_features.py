"""Inputs of the cross-family predictors: ranked statistics, cached zero-cost proxies and the
pretrained ranking MLP (issue 23, part 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau

CELLS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
)


def test_rank_by_family_ignores_scale_and_shift():
    from nas.predictors.graf import rank_by_family

    x = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [10.0, 0.0], [30.0, 1.0], [20.0, 2.0]])
    r = rank_by_family(x, ["a", "a", "a", "b", "b", "b"])
    np.testing.assert_allclose(r[:, 0], [-1, 1, 0, -1, 1, 0])  # same order, same ranks
    np.testing.assert_allclose(r[:3, 1], 0.0)  # a constant column carries nothing
    np.testing.assert_allclose(r[3:, 1], [-1, 0, 1])


def test_proxy_scores_are_cached_per_architecture(tmp_path, monkeypatch):
    from nas.predictors.graf import proxy_scores
    from nas.search_spaces import get_space

    from nas.errors import ConfigError

    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    space = get_space("nb201")
    graphs = [space.to_graph(space.parse(c), "cifar10") for c in CELLS]
    first = proxy_scores(graphs, ["synflow"])[:, 0]
    assert np.all(np.isfinite(first)) and first[0] > first[1]  # convs beat skips
    path = tmp_path / "zerocost-synflow-v1.json"
    cache = json.loads(path.read_text())
    assert len(cache) == 3
    cache[f"nb201|cifar10|{CELLS[0]}"] = 123.0  # a value only the cache can hold
    path.write_text(json.dumps(cache))
    again = proxy_scores(graphs, ["synflow"])[:, 0]
    assert again[0] == 123.0 and again[1] == first[1]
    with pytest.raises(ConfigError, match="unknown zero-cost proxy"):
        proxy_scores(graphs, ["flopz"])


@pytest.mark.slow  # about 9 s on the shared 2-core machine (JAX start-up and compiles)
def test_rank_mlp_pretrains_on_statistics_then_ranks_within_families():
    from nas.predictors.pretrain import MLPConfig, RankMLP, _stats_loss

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    stats = np.stack([x[:, 0] + x[:, 1], np.tanh(x[:, 2])], 1)
    stats[::3, 1] = np.nan  # unknown targets do not count
    cfg = MLPConfig(hidden=(32,), pretrain_steps=150, finetune_steps=150, batch=64, lr=5e-3)
    m = RankMLP(6, 2, seed=0, config=cfg)
    mask = np.isfinite(stats).astype(np.float32)
    before = float(_stats_loss(m.params, x, np.nan_to_num(stats), mask))
    m.pretrain(x, stats)
    after = float(_stats_loss(m.params, x, np.nan_to_num(stats), mask))
    assert after < 0.3 * before
    fam = np.array(["a"] * 150 + ["b"] * 150)
    y = x[:, 0] - x[:, 3] + np.where(fam == "a", 50.0, -50.0)  # family offsets are noise
    m.fit(x[:200], y[:200], fam[:200])
    assert kendalltau(m.predict(x[200:]), y[200:])[0] > 0.6
