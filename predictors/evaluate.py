"""One harness for every predictor: fit on training SPECs, rank a test SPEC."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from nas.errors import ConfigError
from predictors.base import Predictor, get_predictor
from predictors.data import LabelledSet, load_split, parse_spec
from predictors.features import features


def rank_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Kendall tau (tau-b) and Spearman rho of predictions against the truth."""
    if len(y) < 2 or np.all(pred == pred[0]):
        return {"kendall_tau": 0.0, "spearman": 0.0}
    tau = stats.kendalltau(pred, y)[0]
    rho = stats.spearmanr(pred, y)[0]
    return {"kendall_tau": float(np.nan_to_num(tau)), "spearman": float(np.nan_to_num(rho))}


def evaluate_predictor(
    predictor: Predictor,
    train: LabelledSet,
    test: LabelledSet,
    finetune: LabelledSet | None = None,
) -> dict[str, Any]:
    """Fit, optionally fine-tune, predict the test set; rank metrics and timings.

    ``predictions_per_second`` is measured on a second, warm prediction pass over the test
    set with its graph features already in memory (compilation and IR expansion excluded;
    ``featurize_seconds`` reports the latter).
    """
    t0 = time.perf_counter()
    features(list(train.graphs) + list(test.graphs) + list(finetune.graphs if finetune else []))
    featurize = time.perf_counter() - t0
    t0 = time.perf_counter()
    predictor.fit(train.graphs, train.y, train.groups)
    fit_s = time.perf_counter() - t0
    if finetune is not None and len(finetune):
        t0 = time.perf_counter()
        predictor.fine_tune(finetune.graphs, finetune.y, finetune.groups)
        fit_s += time.perf_counter() - t0
    mean, std = predictor.predict(test.graphs)
    t0 = time.perf_counter()
    mean, std = predictor.predict(test.graphs)
    pred_s = time.perf_counter() - t0
    ood = predictor.ood(test.graphs)
    return {
        "predictor": predictor.name,
        **rank_metrics(mean, test.y),
        "n_train": len(train),
        "n_finetune": len(finetune) if finetune is not None else 0,
        "n_test": len(test),
        "predictions_per_second": len(test) / max(pred_s, 1e-9),
        "fit_seconds": fit_s,
        "featurize_seconds": featurize,
        "mean_std": float(np.mean(std)) if len(std) else 0.0,
        "ood_fraction": float(np.mean(ood)) if len(ood) else 0.0,
    }


def evaluate_specs(
    name: str,
    train: Sequence[str],
    test: str,
    seed: int = 0,
    finetune: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``nas predictor evaluate``: SPECs in, metrics out."""
    if not train:
        raise ConfigError("--train needs at least one SPEC")
    specs = list(train) + ([finetune] if finetune else [])
    train_set, test_set = load_split(specs, test, seed=seed)
    ft = None
    if finetune:
        k = parse_spec(finetune).n
        if not k:
            raise ConfigError(f"--finetune {finetune!r} must give a sample size, e.g. nb201:50")
        ft = train_set.subset(range(len(train_set) - k, len(train_set)))
        train_set = train_set.subset(range(len(train_set) - k))
    p = get_predictor(name, seed=seed, **options)
    out = evaluate_predictor(p, train_set, test_set, ft)
    out.update(train=list(train), test=test, seed=seed, finetune=finetune)
    return out
