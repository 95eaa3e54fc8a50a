"""Baselines under the predictor protocol.

* Zero-cost proxies computed as NASLib does on the network the IR describes
  (:mod:`nas.predictors.zerocost`): ``synflow``, ``jacov``, ``snip``, ``grad_norm``,
  ``naswot``; and the ``params`` and ``flops`` counts. They need no training: ``fit`` only
  records the training set for the out-of-distribution flag, and the score (higher is
  better; a heuristic, not an accuracy: ``basis = "proxy"``) is the prediction.
  Data-dependent proxies use one fixed batch of scikit-learn's handwritten digits,
  upsampled to the network's input size (no CIFAR-10 copy is available offline), with a
  fixed seed.
* ``gbm`` (scikit-learn gradient boosting) and ``mlp`` (scikit-learn MLP) on each space's
  own encoding (``space.encode``): these cannot score a space they were not trained on.

Saved models hold only arrays (tree tables, weight matrices); prediction after loading
walks those arrays in numpy, so a loaded model predicts exactly what the saved one did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from nas.predictors.base import Predictor, check_labels
from nas.predictors.features import (
    GLOBALS,
    ArchRef,
    GraphLike,
    as_graph,
    features,
    global_matrix,
    ref_of,
)

from nas.errors import ConfigError
from nas.options import NoOptions, positive

# ------------------------------------------------------------------------------- encodings


def _genotype(g: GraphLike):
    from nas.search_spaces import get_space

    ref = ref_of(g)
    if ref is None:
        raise ConfigError(
            "this predictor reads the space's own encoding; the graph carries no space/arch "
            "metadata (build it with space.to_graph)"
        )
    space = get_space(ref.space)
    return ref.space, space, space.parse(ref.arch)


def encode(graphs: Sequence[GraphLike], expect_space: str | None = None) -> tuple[str, np.ndarray]:
    """The space's own encoding of every graph; all must come from one space."""
    rows, name = [], expect_space
    cache: dict[str, Any] = {}
    for g in graphs:
        ref = ref_of(g)
        if ref is None:
            _genotype(g)  # raises the explanatory error
        if name is None:
            name = ref.space
        if ref.space != name:
            raise ConfigError(
                f"this predictor uses the {name!r} encoding and cannot score {ref.space!r} "
                "architectures; use a graph predictor (gennape) across spaces"
            )
        if ref.space not in cache:
            cache[ref.space] = _genotype(g)[1]
        space = cache[ref.space]
        rows.append(space.encode(space.parse(ref.arch)))
    return name or "", np.asarray(rows, np.float32)


@dataclass(frozen=True)
class EnsembleOptions:
    """Options of ``gbm`` and ``mlp``: the number of ensemble members (their spread is the
    uncertainty)."""

    members: int = 3

    def __post_init__(self) -> None:
        positive("option members", self.members)


@dataclass(frozen=True)
class BatchOptions:
    """Options of the data-dependent zero-cost proxies: the size of their one fixed batch."""

    batch: int = 32

    def __post_init__(self) -> None:
        positive("option batch", self.batch)


class _EncodingPredictor(Predictor):
    zero_shot: ClassVar[bool] = False
    Options: ClassVar[type] = EnsembleOptions

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        self.members = self.config.members
        self.space = ""

    def _ood_features(self, graphs):
        return encode(graphs, self.space)[1]

    def fit(self, graphs, y, groups=None):
        y, _ = check_labels(self.name, graphs, y, groups)
        self.space, x = encode(graphs)
        self.y_mean, self.y_scale = float(y.mean()), float(y.std() or 1.0)
        self._fit_arrays(x, (y - self.y_mean) / self.y_scale)
        self.ood_detector.fit(x, seed=self.seed)
        self.fitted = True
        return self

    def predict(self, graphs):
        self._require_fitted()
        _, x = encode(graphs, self.space)
        preds = np.stack([self._predict_member(i, x) for i in range(self.members)])
        return preds.mean(0) * self.y_scale + self.y_mean, preds.std(0) * self.y_scale


class GBMPredictor(_EncodingPredictor):
    """Gradient-boosted trees (scikit-learn) on the space's encoding; an ensemble of
    ``members`` differently subsampled models gives the spread."""

    name: ClassVar[str] = "gbm"

    def _fit_arrays(self, x, y):
        from sklearn.ensemble import GradientBoostingRegressor

        self.trees: list[dict[str, Any]] = []
        for m in range(self.members):
            est = GradientBoostingRegressor(
                n_estimators=300,
                max_depth=3,
                learning_rate=0.05,
                subsample=0.8,
                random_state=self.seed + m,
            ).fit(x, y)
            self.trees.append(
                {
                    "init": float(est.init_.constant_.ravel()[0]),
                    "lr": float(est.learning_rate),
                    "left": [t[0].tree_.children_left.astype(np.int32) for t in est.estimators_],
                    "right": [t[0].tree_.children_right.astype(np.int32) for t in est.estimators_],
                    "feature": [t[0].tree_.feature.astype(np.int32) for t in est.estimators_],
                    "threshold": [t[0].tree_.threshold.astype(np.float64) for t in est.estimators_],
                    "value": [t[0].tree_.value.ravel().astype(np.float64) for t in est.estimators_],
                }
            )

    def _predict_member(self, i, x):
        m = self.trees[i]
        out = np.full(len(x), m["init"])
        for left, right, feat, thr, val in zip(
            m["left"], m["right"], m["feature"], m["threshold"], m["value"], strict=True
        ):
            node = np.zeros(len(x), int)
            for _ in range(64):
                leaf = left[node] < 0
                if leaf.all():
                    break
                go_left = x[np.arange(len(x)), np.maximum(feat[node], 0)] <= thr[node]
                nxt = np.where(go_left, left[node], right[node])
                node = np.where(leaf, node, nxt)
            out += m["lr"] * val[node]
        return out

    def _state(self):
        arrays = {}
        meta = {"space": self.space, "y_mean": self.y_mean, "y_scale": self.y_scale, "members": []}
        for i, m in enumerate(self.trees):
            meta["members"].append({"init": m["init"], "lr": m["lr"], "trees": len(m["left"])})
            for k in ("left", "right", "feature", "threshold", "value"):
                lens = np.array([len(a) for a in m[k]], np.int64)
                arrays[f"m{i}.{k}"] = np.concatenate(m[k])
                arrays[f"m{i}.{k}.len"] = lens
        return meta, arrays

    def _restore(self, meta, arrays):
        self.space, self.y_mean, self.y_scale = meta["space"], meta["y_mean"], meta["y_scale"]
        self.trees = []
        for i, mm in enumerate(meta["members"]):
            m = {"init": mm["init"], "lr": mm["lr"]}
            for k in ("left", "right", "feature", "threshold", "value"):
                flat, lens = arrays[f"m{i}.{k}"], arrays[f"m{i}.{k}.len"]
                m[k] = np.split(flat, np.cumsum(lens)[:-1])
            self.trees.append(m)
        self.members = len(self.trees)


class MLPPredictor(_EncodingPredictor):
    """A two-layer MLP (scikit-learn) on the space's encoding; ``members`` seeds."""

    name: ClassVar[str] = "mlp"

    def _fit_arrays(self, x, y):
        from sklearn.neural_network import MLPRegressor

        self.weights: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for m in range(self.members):
            est = MLPRegressor(
                hidden_layer_sizes=(64, 64),
                alpha=1e-3,
                learning_rate_init=1e-3,
                max_iter=1000,
                random_state=self.seed + m,
            ).fit(x, y)
            self.weights.append(
                [
                    (w.astype(np.float64), b.astype(np.float64))
                    for w, b in zip(est.coefs_, est.intercepts_, strict=True)
                ]
            )

    def _predict_member(self, i, x):
        h = x.astype(np.float64)
        layers = self.weights[i]
        for j, (w, b) in enumerate(layers):
            h = h @ w + b
            if j < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return h[:, 0]

    def _state(self):
        arrays = {}
        for i, layers in enumerate(self.weights):
            for j, (w, b) in enumerate(layers):
                arrays[f"m{i}.w{j}"], arrays[f"m{i}.b{j}"] = w, b
        meta = {"space": self.space, "y_mean": self.y_mean, "y_scale": self.y_scale}
        meta["layers"] = [len(layers) for layers in self.weights]
        return meta, arrays

    def _restore(self, meta, arrays):
        self.space, self.y_mean, self.y_scale = meta["space"], meta["y_mean"], meta["y_scale"]
        self.weights = [
            [(arrays[f"m{i}.w{j}"], arrays[f"m{i}.b{j}"]) for j in range(n)]
            for i, n in enumerate(meta["layers"])
        ]
        self.members = len(self.weights)


# ------------------------------------------------------------------------------- proxies


class ProxyPredictor(Predictor):
    """A training-free score; ``predict`` returns it (higher is better) with zero spread.

    Scores are cached per (space, arch, dataset) within the process.
    """

    zero_shot: ClassVar[bool] = True
    basis: ClassVar[str] = "proxy"

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        self._cache: dict[Any, float] = {}

    def score(self, graph) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def scores(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        out = np.empty(len(graphs))
        for i, g in enumerate(graphs):
            ref = ref_of(g)
            key = (ref.space, ref.arch, ref.dataset) if ref else None
            if key is not None and key in self._cache:
                out[i] = self._cache[key]
                continue
            val = float(self.score(as_graph(g)))
            if key is not None:
                self._cache[key] = val
            out[i] = val
        return out

    def fit(self, graphs, y=None, groups=None):
        """Record the training set for the out-of-distribution flag (a proxy needs no
        labels; given ones are checked all the same)."""
        if y is not None:
            check_labels(self.name, graphs, y, groups, minimum=1)
        self.ood_detector.fit(self._ood_features(graphs), seed=self.seed)
        self.fitted = True
        return self

    def fine_tune(self, graphs, y=None, groups=None):
        return self.fit(graphs, y, groups)

    def predict(self, graphs):
        s = self.scores(graphs)
        return s, np.zeros_like(s)

    def _ood_features(self, graphs):
        return global_matrix(features(graphs))

    def _state(self):
        return {}, {}

    def _restore(self, meta, arrays):
        pass


class _CountProxy(ProxyPredictor):
    """A count read from the cached graph features (no IR expansion for cached archs)."""

    column: ClassVar[int] = 0
    scale: ClassVar[float] = 1.0

    def scores(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        g = global_matrix(features(graphs))[:, self.column].astype(np.float64)
        return np.round(10.0 ** (g * self.scale))


class ParamsProxy(_CountProxy):
    """Trainable parameter count (float32-rounded through the feature cache)."""

    name: ClassVar[str] = "params"
    column, scale = GLOBALS.index("log_params"), 7.0


class FlopsProxy(_CountProxy):
    """Multiply-accumulates under the network's own counting convention (float32-rounded)."""

    name: ClassVar[str] = "flops"
    column, scale = GLOBALS.index("log_flops"), 9.0


class _ModelProxy(ProxyPredictor):
    """Proxies that run the network (:mod:`nas.predictors.zerocost`: a numpy interpreter of the
    IR with PyTorch-style initial weights, as NASLib's reference scores used)."""

    Options: ClassVar[type] = BatchOptions

    @property
    def batch(self) -> int:
        return self.config.batch

    def _data(self, graph) -> tuple[np.ndarray, np.ndarray]:
        """The fixed batch: ``batch`` digits at the network's input size."""
        from nas.predictors.zerocost.proxies import digits_batch

        return digits_batch(tuple(graph.shape(graph.input)), self.batch, self.seed)


class GradNormProxy(_ModelProxy):
    """Sum over weight tensors of the L2 norm of the loss gradient (Abdelfattah et al.)."""

    name: ClassVar[str] = "grad_norm"

    def score(self, graph) -> float:
        from nas.predictors.zerocost.proxies import grad_norm

        return grad_norm(graph, *self._data(graph), seed=self.seed)


class SnipProxy(_ModelProxy):
    """SNIP saliency: sum of ``|w * dL/dw|`` over conv and dense weights."""

    name: ClassVar[str] = "snip"

    def score(self, graph) -> float:
        from nas.predictors.zerocost.proxies import snip

        return snip(graph, *self._data(graph), seed=self.seed)


class SynflowProxy(_ModelProxy):
    """SynFlow as NASLib computes it: ``log sum(theta * dR/dtheta)`` with ``R`` the summed
    output of the network with absolute weights, BatchNorm removed, on an all-ones input,
    in float64."""

    name: ClassVar[str] = "synflow"
    Options: ClassVar[type] = NoOptions

    def score(self, graph) -> float:
        from nas.predictors.zerocost.proxies import synflow

        return synflow(graph, seed=self.seed)


class JacovProxy(_ModelProxy):
    """Jacobian covariance (Mellor et al. 2020, v1): eigenvalues of the correlation matrix
    of the input Jacobians of a batch; higher is better."""

    name: ClassVar[str] = "jacov"

    def score(self, graph) -> float:
        from nas.predictors.zerocost.proxies import jacov

        return jacov(graph, self._data(graph)[0], seed=self.seed)


class NaswotProxy(_ModelProxy):
    """NASWOT (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the
    binary ReLU activation codes of a batch."""

    name: ClassVar[str] = "naswot"

    def score(self, graph) -> float:
        from nas.predictors.zerocost.proxies import naswot

        return naswot(graph, self._data(graph)[0], seed=self.seed)


ZERO_COST = ("synflow", "jacov", "snip", "grad_norm", "naswot")
PROXIES = ("params", "flops", *ZERO_COST)

__all__ = [
    "ArchRef",
    "FlopsProxy",
    "GBMPredictor",
    "GradNormProxy",
    "JacovProxy",
    "MLPPredictor",
    "NaswotProxy",
    "PROXIES",
    "ParamsProxy",
    "ProxyPredictor",
    "SnipProxy",
    "SynflowProxy",
    "ZERO_COST",
    "encode",
]
