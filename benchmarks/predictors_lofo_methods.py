"""The ranked-statistics and MLP methods of :mod:`benchmarks.predictors_lofo`.

``graf-zc*``: GRAF statistics and zero-cost proxies ranked within each family
(:func:`nas.predictors.graf.rank_by_family`) into gradient boosting or a linear ranking
score; ``mlp*``: the ranking MLP of :mod:`nas.predictors.pretrain`, optionally pretrained.
Both parts are z-scored within the ranked family before they are mixed (or only the prior,
for the residual variants).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.predictors_lofo import _gbm, run_learned


def _zc_matrix(data, proxies: Sequence[str], hide: Sequence[str] = ()) -> np.ndarray:
    """GRAF statistics (less the columns ``hide``) and zero-cost proxies, each ranked
    within its family (:func:`nas.predictors.graf.rank_by_family`)."""
    from nas.predictors.features import features
    from nas.predictors.graf import NAMES, graf_features, proxy_scores, rank_by_family

    x = graf_features(features(data.graphs))
    x = x[:, [i for i, n in enumerate(NAMES) if n not in hide]]
    if proxies:
        x = np.hstack([x, proxy_scores(data.graphs, proxies, progress=True)])
    return rank_by_family(x, data.groups)


def run_graf_zc(data, held: str, seed: int, variant: str, proxies) -> dict[str, Any]:
    """Transferrable-surrogate style: ranked GRAF statistics and zero-cost proxies into
    gradient boosting. ``variant``: ``zc`` (on per-family standardised accuracy),
    ``zc-rank`` (on per-family accuracy ranks), ``zc-prior`` (the prior's score, ranked
    within each family, as one more input)."""
    from nas.predictors.features import features
    from nas.predictors.graf import NAMES, rank_by_family
    from nas.predictors.transfer import standardise

    x = _zc_matrix(data, proxies)
    if variant == "zc-rank":
        target = rank_by_family(data.y[:, None], data.groups)[:, 0]
    else:
        target = standardise(data.y, list(data.groups))[0]
    feats = features(data.graphs)
    if variant == "zc-linear":
        return run_learned(data, held, seed, _linear(x, data), scale="both")
    if variant == "zc-linear-few":
        few = [NAMES.index(n) for n in FEW] + list(range(len(NAMES), x.shape[1]))
        return run_learned(data, held, seed, _linear(x[:, few], data), scale="both")
    if variant == "zc-resid":
        return run_learned(data, held, seed, _residual_gbm(x, target, feats, data, seed), "prior")
    if variant != "zc-prior":
        return run_learned(data, held, seed, _gbm(x, target, seed), scale="both")

    def learner(train, out, prior):
        col = rank_by_family(prior(feats)[:, None], data.groups)
        return _gbm(np.hstack([x, col]), target, seed)(train, out, prior)

    return run_learned(data, held, seed, learner, scale="both")


FEW = ("log_live_macs", "log_params", "spatial_depth", "longest_spatial_path", "log_paths")
"""The statistics ``graf-zc-linear-few`` weighs (beside the proxies): the prior's two
ingredients and their nearest relatives."""


def _linear(x: np.ndarray, data):
    """A linear score of the ranked statistics, fitted by the pairwise ranking loss within
    each training family (:class:`~nas.predictors.pretrain.RankMLP` without hidden layers):
    few weights, on scale-free inputs, so that what it learns can transfer."""
    from nas.predictors.pretrain import MLPConfig, RankMLP

    fam = np.array(data.groups)

    def learner(train, out, prior):
        m = RankMLP(x.shape[1], 1, 0, MLPConfig(hidden=(), finetune_steps=400, lr=1e-2))
        return m.fit(x[train], data.y[train], fam[train]).predict(x[out])

    return learner


def _z_prior(prior, feats, groups) -> np.ndarray:
    """The prior's score z-scored within each family (over its architectures, no labels)."""
    from nas.predictors.graf import standardise_by_family

    return standardise_by_family(prior(feats)[:, None], groups)[:, 0]


def _residual_gbm(x, target, feats, data, seed: int):
    """Gradient boosting on what the z-scored prior leaves of the target: ``target - b *
    prior`` (``b`` by least squares on the training rows); its prediction divided by ``b``
    adds to the z-scored prior."""

    def learner(train, out, prior):
        zp = _z_prior(prior, feats, data.groups)
        b = float(np.dot(zp[train], target[train]) / max(np.dot(zp[train], zp[train]), 1e-9))
        b = max(b, 1e-3)
        return _gbm(x, target - b * zp, seed)(train, out, prior) / b

    return learner


def run_mlp(data, held: str, seed: int, pool, resid: bool = False) -> dict[str, Any]:
    """The ranking MLP of :mod:`nas.predictors.pretrain` on ranked GRAF statistics (less
    the pretraining targets), pretrained on ``pool`` (whose first rows are ``data``'s
    architectures: :func:`~nas.predictors.pretrain.pretrain_pool`) unless
    ``pool`` is ``None``, then fine-tuned on the training families' accuracy ranks; with
    ``resid`` as a residual of the z-scored prior."""
    from nas.predictors.features import features
    from nas.predictors.pretrain import RankMLP

    x = pool[0][: len(data)] if pool is not None else None
    if x is None:
        from nas.predictors.pretrain import STATS

        x = _zc_matrix(data, (), hide=STATS)
    fam = np.array(data.groups)
    base = RankMLP(x.shape[1], pool[1].shape[1] if pool is not None else 1, seed)
    if pool is not None:
        base.pretrain(*pool)

    feats = features(data.graphs) if resid else None

    def learner(train, out, prior):
        m = RankMLP(x.shape[1], 1, seed)
        m.params = base.params
        off = _z_prior(prior, feats, data.groups)[train] if resid else None
        return m.fit(x[train], data.y[train], fam[train], off).predict(x[out])

    return run_learned(data, held, seed, learner, scale="prior" if resid else "both")
