"""The predictor contract: every registered predictor runs the same suite.

In the style of optuna's sampler tests (``optuna/testing/pytest_samplers.py``): each name
of ``nas.registry.names("predictors")`` (built-ins and installed plugins) is fitted on a
few NAS-Bench-201 cells and must be seeded-deterministic, survive a save/load round trip
with the same predictions, and turn bad input (options, labels, graphs) into a typed
:class:`~nas.errors.NasError` before any work, never another exception.

Needs no reference data: the cells are sampled from the space and their labels are a made-up
function of their cost (any labels do for these invariants). Networks are built at
ImageNet16-120's 16x16 resolution and the trained predictors get tiny settings, so that
the suite stays cheap.
"""

from __future__ import annotations

import numpy as np
import pytest

from nas import registry
from nas.errors import ConfigError, NasError

TINY: dict[str, dict] = {
    "gennape": {"pretrain_steps": 0, "steps": 10, "hidden": 8, "embed": 8, "prior": "flops"},
    "onnxnet": {"mode": "stats", "steps": 20, "ensemble": 2, "hidden": 16},
    "gcn": {"epochs": 20, "layers": 2, "hidden": 16, "linear": 16},
    "jacov": {"batch": 4},
    "snip": {"batch": 4},
    "grad_norm": {"batch": 4},
    "naswot": {"batch": 4},
}
"""Cheap settings per built-in predictor; a plugin runs with its defaults."""

NAMES = registry.names("predictors")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "contract-cache"))


@pytest.fixture(scope="module")
def cells():
    """Eight sampled NB201 cells (16x16 inputs) with labels, and two more to predict."""
    from nas.predictors.features import ArchRef
    from nas.search_spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    seen: dict[str, ArchRef] = {}
    while len(seen) < 10:
        arch = space.sample(rng).to_str()
        seen.setdefault(arch, ArchRef("nb201", arch, "ImageNet16-120"))
    refs = list(seen.values())
    # Made-up labels: log FLOPs plus a per-cell offset (deterministic, not monotone in cost).
    y = np.array([np.log(r.graph().flops()) + (i % 3) * 0.7 for i, r in enumerate(refs)])
    return refs[:8], 50.0 + 5.0 * y[:8], refs[8:]


def _fitted(name: str, cells, seed: int = 0):
    from nas.predictors.base import get_predictor

    train, y, _ = cells
    p = get_predictor(name, seed=seed, **TINY.get(name, {}))
    return p.fit(train, y, ["nb201"] * len(train))


@pytest.mark.parametrize("name", NAMES)
def test_seeded_determinism_and_save_load_round_trip(name, cells, tmp_path):
    from nas.predictors.base import load_predictor

    _, _, test = cells
    a = _fitted(name, cells, seed=3)
    mean, std = a.predict(test)
    assert mean.shape == std.shape == (len(test),)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    again = _fitted(name, cells, seed=3).predict(test)
    np.testing.assert_array_equal(again[0], mean)
    np.testing.assert_array_equal(again[1], std)
    a.save(tmp_path / name)
    b = load_predictor(tmp_path / name)
    assert type(b) is type(a) and b.options == a.options and b.seed == a.seed
    loaded = b.predict(test)
    np.testing.assert_allclose(loaded[0], mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded[1], std, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(b.ood(test), a.ood(test))
    # The label says where the numbers come from; a prior's share is a share.
    assert a.basis in ("learned", "proxy", "prior+learned")
    dec = a.decompose(test)
    assert (dec is not None) == (a.basis == "prior+learned")
    if dec is not None:
        assert np.all((dec.share >= 0) & (dec.share <= 1))


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_typed_error(name, cells):
    from nas.predictors.base import get_predictor

    train, y, test = cells
    with pytest.raises(ConfigError, match="unknown key 'no_such_option'; valid keys"):
        get_predictor(name, no_such_option=1)
    p = get_predictor(name, seed=0, **TINY.get(name, {}))
    if p.basis == "proxy":  # a training-free score needs no fit
        assert np.all(np.isfinite(p.predict(test)[0]))
    else:
        with pytest.raises(NasError, match="not fitted"):
            p.predict(test)
    bad_labels = (y[:-1], np.where(np.arange(len(y)) == 2, np.nan, y), "high")
    for labels in bad_labels:
        with pytest.raises(ConfigError, match="label"):
            p.fit(train, labels)
    with pytest.raises(ConfigError, match="architecture graphs"):
        p.fit(["|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", *train[1:]], y)
    with pytest.raises(ConfigError, match="seed"):
        get_predictor(name, seed="one")


@pytest.mark.parametrize("name", [n for n in NAMES if n in TINY])
def test_wrongly_typed_option_names_the_option(name):
    from nas.predictors.base import get_predictor

    key = next(iter(TINY[name]))
    with pytest.raises(ConfigError, match=key):
        get_predictor(name, **{key: "lots"})
