"""One harness for every predictor: fit on training SPECs, rank a test SPEC."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from nas.predictors.base import Predictor, get_predictor
from nas.predictors.data import LabelledSet, load_split, parse_spec
from nas.predictors.features import features
from scipy import stats

from nas.errors import ConfigError


def rank_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Kendall tau (tau-b) and Spearman rho of predictions against the truth."""
    if len(y) < 2 or np.all(pred == pred[0]):
        return {"kendall_tau": 0.0, "spearman": 0.0}
    tau = stats.kendalltau(pred, y)[0]
    rho = stats.spearmanr(pred, y)[0]
    return {"kendall_tau": float(np.nan_to_num(tau)), "spearman": float(np.nan_to_num(rho))}


@dataclass(frozen=True)
class Evaluation:
    """One predictor evaluation: the metrics and, per test architecture, truth and prediction.

    ``metrics`` is the dictionary :func:`evaluate_predictor` returns; ``y``, ``mean``, ``std``
    and ``ood`` are aligned with the test set, so a plot needs no second fit.
    """

    metrics: dict[str, Any]
    y: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ood: np.ndarray


def run_evaluation(
    predictor: Predictor,
    train: LabelledSet,
    test: LabelledSet,
    finetune: LabelledSet | None = None,
    refit: bool = True,
) -> Evaluation:
    """Fit, optionally fine-tune, predict the test set; rank metrics, timings, predictions.

    ``predictions_per_second`` is measured on a second, warm prediction pass over the test
    set with its graph features already in memory: everything a repeated ``predict`` call
    pays from cached features to scores (feature lookup, batching, the model), but not
    compilation or IR expansion. ``first_predict_seconds`` is the first pass, compilation
    included; ``featurize_seconds`` the IR expansion and feature building (or cache read).
    ``refit=False`` scores a predictor already fitted on ``train`` (``fit_seconds`` 0).

    Labels: ``basis`` says where the numbers come from (``learned``, ``proxy`` or
    ``prior+learned``); a predictor with a compute prior also reports ``learned_share`` (the
    mean share of the learned part in the test predictions: 0 is the prior alone) and the
    rank metrics of its two parts on their own, ``prior_only`` and ``learned_only``.
    """
    t0 = time.perf_counter()
    features(list(train.graphs) + list(test.graphs) + list(finetune.graphs if finetune else []))
    featurize = time.perf_counter() - t0
    t0 = time.perf_counter()
    if refit or not predictor.fitted:
        predictor.fit(train.graphs, train.y, train.groups)
    fit_s = time.perf_counter() - t0
    if finetune is not None and len(finetune):
        t0 = time.perf_counter()
        predictor.fine_tune(finetune.graphs, finetune.y, finetune.groups)
        fit_s += time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, std = predictor.predict(test.graphs)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mean, std = predictor.predict(test.graphs)
    pred_s = time.perf_counter() - t0
    ood = predictor.ood(test.graphs)
    metrics = {
        "predictor": predictor.name,
        **rank_metrics(mean, test.y),
        "n_train": len(train),
        "n_finetune": len(finetune) if finetune is not None else 0,
        "n_test": len(test),
        "predictions_per_second": len(test) / max(pred_s, 1e-9),
        "first_predict_seconds": first_s,
        "fit_seconds": fit_s,
        "featurize_seconds": featurize,
        "mean_std": float(np.mean(std)) if len(std) else 0.0,
        "ood_fraction": float(np.mean(ood)) if len(ood) else 0.0,
        **source_labels(predictor, test.graphs, np.asarray(test.y)),
    }
    return Evaluation(
        metrics, np.asarray(test.y), np.asarray(mean), np.asarray(std), np.asarray(ood)
    )


def source_labels(predictor: Predictor, graphs: Sequence, y: np.ndarray) -> dict[str, Any]:
    """``basis``, and for a predictor with a prior ``learned_share`` (mean over ``graphs``)
    with the rank metrics of the prior alone and of the learned part alone."""
    out: dict[str, Any] = {"basis": predictor.basis}
    dec = predictor.decompose(graphs)
    if dec is not None:
        out["learned_share"] = float(np.mean(dec.share)) if len(dec.share) else 0.0
        out["prior_only"] = rank_metrics(np.asarray(dec.prior), y)
        out["learned_only"] = rank_metrics(np.asarray(dec.learned), y)
    return out


def evaluate_predictor(
    predictor: Predictor,
    train: LabelledSet,
    test: LabelledSet,
    finetune: LabelledSet | None = None,
    refit: bool = True,
) -> dict[str, Any]:
    """The metrics of :func:`run_evaluation` (rank correlations, sizes, timings)."""
    return run_evaluation(predictor, train, test, finetune, refit).metrics


def specs_evaluation(
    name: str,
    train: Sequence[str],
    test: str,
    seed: int = 0,
    finetune: str | None = None,
    **options: Any,
) -> Evaluation:
    """Load the SPECs, fit predictor ``name``, rank the test SPEC; predictions included.

    A pretrained predictor (``pretrained:NAME``) is not fitted: its ``train`` SPECs, if any,
    fine-tune it, and the test set leaves out what it was trained on.
    """
    from nas.predictors import pretrained

    if pretrained.is_pretrained(name):
        return _pretrained_evaluation(name, train, test, seed, finetune, **options)
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
    ev = run_evaluation(p, train_set, test_set, ft)
    ev.metrics.update(train=list(train), test=test, seed=seed, finetune=finetune)
    return ev


def _pretrained_evaluation(
    name: str, train: Sequence[str], test: str, seed: int, finetune: str | None, **options: Any
) -> Evaluation:
    from nas.predictors import pretrained
    from nas.predictors.data import train_archs

    if finetune:
        raise ConfigError(f"{name} is already trained: give its fine-tuning data as --train")
    _, recipe = pretrained.recipe(name)
    seen = train_archs(recipe.train, recipe.seed)
    tune, test_set = load_split(list(train), test, seed=seed, exclude=seen)
    p = get_predictor(name, seed=seed, **options)
    ev = run_evaluation(p, tune, test_set, tune if len(tune) else None, refit=False)
    ev.metrics.update(
        predictor=name,
        train=list(train),
        test=test,
        seed=seed,
        pretrained_on=list(recipe.train),
        n_pretrain=sum(len(v) for v in seen.values()),
    )
    return ev


def evaluate_specs(
    name: str,
    train: Sequence[str],
    test: str,
    seed: int = 0,
    finetune: str | None = None,
    plot: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``nas predictor evaluate``: SPECs in, metrics out.

    With ``plot`` (a ``.png`` or ``.svg`` path) the predicted-versus-true scatter plot of the
    same predictions is written there (:func:`plot_predictions`) and its path returned under
    ``"plot"``.
    """
    if plot is not None:
        _plot_path(plot)  # a bad suffix fails before the fit, not after it
    ev = specs_evaluation(name, train, test, seed=seed, finetune=finetune, **options)
    out = dict(ev.metrics)
    if plot is not None:
        setting = f"train {','.join(train)}" + (f" + finetune {finetune}" if finetune else "")
        out["plot"] = str(
            plot_predictions(
                ev.mean, ev.y, plot, name=out["predictor"], setting=f"{setting}; test {test}"
            )
        )
    return out


def _plot_path(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"plot file must end in .png or .svg, got {out.name!r}")
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (ties share their rank, as in Spearman's rho)."""
    r = stats.rankdata(x)
    return (r - 1.0) / max(len(x) - 1, 1)


def plot_predictions(
    pred: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    out: str | Path,
    name: str = "predictor",
    setting: str | None = None,
) -> Path:
    """Predicted versus true accuracy of a predictor evaluation, as ``.png`` or ``.svg``.

    Two panels. Left, the raw values: the predictor's score (its own scale: a proxy such as
    ``params`` counts parameters, so no ``y = x`` line is drawn; a logarithmic axis when the
    scores are positive and span more than two decades) against the true accuracy. Right,
    rank against rank (both scaled to [0, 1]) with the diagonal: the metrics in the title are
    rank correlations, so this panel is the one they summarise whatever the predictor's
    scale, and a perfect ranking lies on the diagonal. The title names the predictor, Kendall
    tau, Spearman rho and the test-set size.
    """
    from nas.figures import new_figure

    out = _plot_path(out)
    pred = np.asarray(pred, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if pred.shape != y.shape or len(y) == 0:
        raise ConfigError(
            f"plot needs as many predictions as true values (> 0), got {len(pred)} and {len(y)}"
        )
    m = rank_metrics(pred, y)
    n = len(y)
    size, alpha = (12, 0.7) if n <= 500 else (3, 0.35)
    fig = new_figure((9.5, 4.2))
    ax, axr = fig.subplots(1, 2)
    ax.scatter(pred, y, s=size, alpha=alpha, color="#1f77b4", edgecolors="none")
    finite = pred[np.isfinite(pred)]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 100:
        ax.set_xscale("log")
    ax.set_xlabel(f"predicted score ({name})")
    ax.set_ylabel("true accuracy")
    ax.set_title("values", fontsize=9)
    axr.scatter(_ranks(pred), _ranks(y), s=size, alpha=alpha, color="#d62728", edgecolors="none")
    axr.plot([0, 1], [0, 1], ls="--", lw=1, color="#555555", label="perfect ranking")
    axr.set_xlim(-0.02, 1.02)
    axr.set_ylim(-0.02, 1.02)
    axr.set_xlabel("rank of prediction (0 = lowest, 1 = highest)")
    axr.set_ylabel("rank of true accuracy")
    axr.set_title("ranks", fontsize=9)
    axr.legend(loc="upper left", fontsize=8, frameon=False)
    title = (
        f"{name}: Kendall tau {m['kendall_tau']:.3f}, Spearman {m['spearman']:.3f}, n_test = {n:,}"
    )
    if setting:
        title += f"\n{setting}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
