"""The predictor protocol, out-of-distribution detection, persistence and the registry.

A predictor maps architecture graphs (:class:`~nas.graph.ArchGraph`, or the lazy
:class:`~nas.predictors.features.ArchRef` of the labelled-data loaders) to an accuracy estimate
with an uncertainty::

    p = get_predictor("gennape").fit(graphs, y)
    mean, std = p.predict(graphs)
    far = p.ood(graphs)           # True where an input is far from the training data
    p.save("model_dir"); q = load_predictor("model_dir")

Saved predictors are a folder with ``predictor.json`` (name, options, scalars) and
``arrays.safetensors`` (every array): nothing that executes code on load.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from nas.predictors.features import GraphLike

from nas.errors import ConfigError, DataError
from nas.options import NoOptions, build_options

FORMAT_VERSION = 1
CONFIG_FILE = "predictor.json"
ARRAYS_FILE = "arrays.safetensors"


class KnnOOD:
    """Out-of-distribution flag: distance to the k nearest training points, and support.

    Features are standardised with the training statistics; an input is flagged when its
    mean distance to its ``k`` nearest training points exceeds the ``quantile`` of the same
    (leave-one-out) distance over the training points, times ``margin``, or when any feature
    leaves the training range widened by a quarter of its width (plus 0.05): a network with
    an op type, resolution or size never seen in training is flagged even when the
    distance, averaged over many dimensions, is unremarkable.
    """

    def __init__(self, k: int = 5, quantile: float = 0.99, margin: float = 1.5) -> None:
        self.k, self.quantile, self.margin = k, quantile, margin
        self.ref: np.ndarray | None = None
        self.mu = self.sd = self.lo = self.hi = None
        self.threshold = float("inf")

    def fit(self, x: np.ndarray, max_ref: int = 2000, seed: int = 0) -> KnnOOD:
        x = np.asarray(x, np.float64)
        if len(x) > max_ref:
            x = x[np.random.default_rng(seed).choice(len(x), max_ref, replace=False)]
        self.lo, self.hi = x.min(0), x.max(0)
        self.mu = x.mean(0)
        self.sd = np.maximum(x.std(0), 0.05)  # features are O(1); a floor keeps it stable
        self.ref = (x - self.mu) / self.sd
        if len(self.ref) > 1:
            d = _knn(self.ref, self.ref, min(self.k + 1, len(self.ref)))
            loo = d[:, 1:].mean(1) if d.shape[1] > 1 else d[:, 0]
            self.threshold = float(np.quantile(loo, self.quantile)) * self.margin + 1e-6
        return self

    def distance(self, x: np.ndarray) -> np.ndarray:
        if self.ref is None:
            return np.zeros(len(x))
        z = (np.asarray(x, np.float64) - self.mu) / self.sd
        return _knn(z, self.ref, min(self.k, len(self.ref))).mean(1)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """Whether any feature leaves the (widened) training range."""
        if self.ref is None:
            return np.zeros(len(x), bool)
        x = np.asarray(x, np.float64)
        m = 0.25 * (self.hi - self.lo) + 0.05
        return ((x < self.lo - m) | (x > self.hi + m)).any(1)

    def flag(self, x: np.ndarray) -> np.ndarray:
        return (self.distance(x) > self.threshold) | self.outside(x)

    def state(self, prefix: str = "ood.") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.ref is None:
            return {"fitted": False}, {}
        meta = {"fitted": True, "k": self.k, "quantile": self.quantile, "margin": self.margin}
        meta["threshold"] = self.threshold
        return meta, {
            prefix + "ref": self.ref.astype(np.float32),
            prefix + "mu": self.mu.astype(np.float64),
            prefix + "sd": self.sd.astype(np.float64),
            prefix + "lo": self.lo.astype(np.float64),
            prefix + "hi": self.hi.astype(np.float64),
        }

    @classmethod
    def restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "ood."):
        o = cls()
        if meta.get("fitted"):
            o.k, o.quantile, o.margin = meta["k"], meta["quantile"], meta["margin"]
            o.threshold = float(meta["threshold"])
            o.ref = arrays[prefix + "ref"].astype(np.float64)
            o.mu, o.sd = arrays[prefix + "mu"], arrays[prefix + "sd"]
            o.lo, o.hi = arrays[prefix + "lo"], arrays[prefix + "hi"]
        return o


def _knn(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Sorted distances from each row of ``a`` to its ``k`` nearest rows of ``b``."""
    out = []
    for i in range(0, len(a), 2048):
        chunk = a[i : i + 2048]
        d2 = (chunk**2).sum(1)[:, None] - 2 * chunk @ b.T + (b**2).sum(1)[None]
        d = np.sqrt(np.maximum(d2, 0.0))
        part = np.partition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else d
        out.append(np.sort(part, axis=1))
    return np.concatenate(out) if out else np.zeros((0, k))


BASES = ("learned", "proxy", "prior+learned")
"""Where a predictor's numbers come from (:attr:`Predictor.basis`)."""


@dataclass(frozen=True)
class Decomposition:
    """A prediction split into its sources, per graph, in the predictor's internal units
    (the prediction is an increasing function of ``prior + share * learned``).

    Attributes:
        prior: the compute prior's part (fitted on the training labels, a few numbers).
        learned: the learned part at full weight.
        share: how much of the learned part the prediction holds: 1 on a space the
            predictor was trained on, its transfer share elsewhere (0: the prior alone).
    """

    prior: np.ndarray
    learned: np.ndarray
    share: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        return self.prior + self.share * self.learned


def check_labels(
    name: str,
    graphs: Sequence[GraphLike],
    y: Sequence[float] | None,
    groups: Sequence[str] | None = None,
    minimum: int = 2,
) -> tuple[np.ndarray, list[str]]:
    """Training labels as float64 and groups as a list (``"all"`` when not given).

    Raises:
        ConfigError: fewer than ``minimum`` graphs, a label count or group count that
            differs from the graph count, or a label that is not a finite number.
    """
    n = len(graphs)
    if y is not None and not hasattr(y, "__len__"):
        raise ConfigError(f"{name}: labels must be a sequence of numbers, got {type(y).__name__}")
    if y is None or len(y) != n or n < minimum:
        got = "no labels" if y is None else f"{len(y)} labels"
        raise ConfigError(
            f"{name} needs at least {minimum} graphs with one label each, got {n} graphs and {got}"
        )
    try:
        arr = np.asarray(y, np.float64).reshape(n)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: labels must be numbers") from None
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name}: labels must be finite numbers (found NaN or infinity)")
    groups = list(groups) if groups is not None else ["all"] * n
    if len(groups) != n:
        raise ConfigError(f"{name}: {len(groups)} groups for {n} graphs")
    return arr, [str(g) for g in groups]


class Predictor(ABC):
    """Accuracy predictor over architecture graphs.

    Subclasses set ``name`` and ``Options`` (a frozen dataclass of their settings, see
    :mod:`nas.options`: an unknown or mistyped option is a one-line :class:`ConfigError`
    naming the valid keys), implement :meth:`fit`, :meth:`predict`, :meth:`_ood_features`,
    :meth:`_state` and :meth:`_restore`. ``fine_tune`` defaults to refitting on the new data.

    Attributes:
        config: the checked ``Options`` instance.
        options: the same as a plain dictionary (every option, defaults included), which
            :meth:`save` writes so that a saved model keeps its meaning when defaults change.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    zero_shot: ClassVar[bool] = True
    """Whether the predictor can score spaces it was not trained on."""
    basis: ClassVar[str] = "learned"
    """One of :data:`BASES`: ``learned`` (fitted on labels), ``proxy`` (a training-free
    heuristic score, not an accuracy), ``prior+learned`` (a fitted compute prior plus a
    learned part; :meth:`decompose` says how much of each)."""

    def __init__(self, seed: int = 0, **options: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
            raise ConfigError(f"predictor seed must be an integer, got {seed!r}"[:120])
        self.seed = int(seed)
        self.config = build_options(type(self).Options, options, f"{self.name} predictor options")
        self.options: dict[str, Any] = dataclasses.asdict(self.config)
        self.ood_detector = KnnOOD()
        self.fitted = False
        self.from_pretrained: str | None = None
        """The pretrained predictor this one was loaded as (:mod:`nas.predictors.pretrained`):
        its ``fit`` fine-tunes instead of starting again."""

    # ------------------------------------------------------------------ protocol

    @abstractmethod
    def fit(
        self,
        graphs: Sequence[GraphLike],
        y: Sequence[float],
        groups: Sequence[str] | None = None,
    ) -> Predictor:
        """Train on graphs with accuracies; ``groups`` names each one's family."""

    @abstractmethod
    def predict(self, graphs: Sequence[GraphLike]) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` per graph."""

    def fine_tune(
        self,
        graphs: Sequence[GraphLike],
        y: Sequence[float],
        groups: Sequence[str] | None = None,
    ) -> Predictor:
        """Adapt to a few labelled graphs of a new family (default: fit on them)."""
        return self.fit(graphs, y, groups)

    def decompose(self, graphs: Sequence[GraphLike]) -> Decomposition | None:
        """The prediction split into prior and learned part (``basis == "prior+learned"``);
        ``None`` for a predictor without a prior."""
        return None

    def ood(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        """``True`` where an input is far from the training distribution: by the detector's
        distance, or, for a predictor that records the spaces it was trained on
        (``families``), because the input names a space it never saw."""
        self._require_fitted()
        far = self.ood_detector.flag(self._ood_features(graphs))
        trained_on = getattr(self, "families", None)
        if trained_on:
            from nas.predictors.transfer import families

            named = np.array([f not in ("", *trained_on) for f in families(graphs)], bool)
            far = far | named
        return far

    def ood_distance(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        self._require_fitted()
        return self.ood_detector.distance(self._ood_features(graphs))

    @abstractmethod
    def _ood_features(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        """The vectors the OOD detector compares with the training set."""

    # ------------------------------------------------------------------ persistence

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON-able scalars and named arrays that :meth:`_restore` turns back into a model."""

    @abstractmethod
    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None: ...

    def save(self, path: str | Path) -> Path:
        """Write the fitted predictor to the folder ``path`` (created)."""
        from safetensors.numpy import save_file

        self._require_fitted()
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        meta, arrays = self._state()
        ood_meta, ood_arrays = self.ood_detector.state()
        doc = {
            "format": "nas.predictor",
            "version": FORMAT_VERSION,
            "predictor": self.name,
            "seed": self.seed,
            "options": self.options,
            "state": meta,
            "ood": ood_meta,
        }
        save_file(
            {k: np.ascontiguousarray(v) for k, v in {**arrays, **ood_arrays}.items()},
            str(folder / ARRAYS_FILE),
        )
        (folder / CONFIG_FILE).write_text(json.dumps(doc, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """Read a predictor written by :meth:`save` (any registered kind)."""
        return load_predictor(path)

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError(f"predictor {self.name!r} is not fitted; call fit() first")


def _check_ood(o: KnnOOD) -> None:
    """Raise ``ValueError`` unless a restored detector's numbers and arrays fit together."""
    if o.ref is None:
        return
    if not (isinstance(o.k, int) and o.k >= 1):
        raise ValueError(f"k = {o.k!r} is not a positive count")
    if not all(isinstance(v, int | float) for v in (o.quantile, o.margin, o.threshold)):
        raise ValueError("quantile, margin and threshold must be numbers")
    width = o.ref.shape[1] if o.ref.ndim == 2 else -1
    if any(np.ndim(v) != 1 or len(v) != width for v in (o.mu, o.sd, o.lo, o.hi)):
        raise ValueError("the reference set and its statistics have different widths")


def load_predictor(path: str | Path) -> Predictor:
    """Read a saved predictor folder (``predictor.json`` + ``arrays.safetensors``).

    The folder may come from anyone: a file that is not a saved predictor, JSON of another
    shape, a bad safetensors header or arrays that do not fit the description are each a
    :class:`DataError` naming the folder, never a traceback.
    """
    from nas.predictors import pretrained

    from nas.inputs import read_json, read_safetensors

    if pretrained.is_pretrained(path):
        return pretrained.load(str(path))
    folder = Path(path)
    cfg = folder / CONFIG_FILE
    if not cfg.exists():
        raise DataError(
            f"{folder} is not a saved predictor (no {CONFIG_FILE}); run nas predictor fit"
        )
    doc = read_json(cfg, "saved predictor file")
    if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
        "nas.predictor",
        FORMAT_VERSION,
    ):
        raise DataError(f"{cfg} is not a version-{FORMAT_VERSION} nas predictor file")
    kinds = {"predictor": str, "seed": int, "options": dict, "state": dict, "ood": dict}
    bad = [k for k, t in kinds.items() if k in doc and not isinstance(doc[k], t)]
    if bad or not isinstance(doc.get("predictor"), str):
        raise DataError(f"{cfg} is damaged or edited: {bad or ['predictor']} have the wrong type")
    arrays_path = folder / ARRAYS_FILE
    arrays = read_safetensors(arrays_path, "predictor arrays file") if arrays_path.exists() else {}
    _check_arrays(arrays_path, arrays)
    p = get_predictor(doc["predictor"], seed=doc.get("seed", 0), **doc.get("options", {}))
    try:
        p._restore(doc.get("state", {}), arrays)
        p.ood_detector = KnnOOD.restore(doc.get("ood", {}), arrays)
        _check_ood(p.ood_detector)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise DataError(
            f"{folder} does not hold a consistent saved {doc['predictor']} predictor (damaged "
            f"or edited): {type(e).__name__} {str(e)[:100]}"
        ) from None
    p.fitted = True
    return p


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A saved predictor's arrays are numbers, and its floating-point arrays are finite: a NaN
    written into a weight would make every prediction NaN without a word."""
    for name, a in arrays.items():
        if a.dtype.kind not in "fiub":
            raise DataError(f"{path}: array {name[:80]!r} has dtype {a.dtype}, not numbers")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise DataError(f"{path}: array {name[:80]!r} holds NaN or infinite values (edited?)")


# ---------------------------------------------------------------------------- registry


def predictor_names() -> list[str]:
    """Every registered predictor (built-in and plugins'): :func:`nas.registry.names`."""
    from nas import registry

    return registry.names("predictors")


def get_predictor(name: str, **options: Any) -> Predictor:
    """A new predictor registered as ``name``, or a pretrained one (``pretrained:NAME``,
    loaded ready to predict; it takes only a ``seed``, for its fine-tuning)."""
    from nas.predictors import pretrained

    from nas import registry

    if pretrained.is_pretrained(name):
        seed = options.pop("seed", None)
        if options:
            raise ConfigError(
                f"{name} takes no options (got {sorted(options)}); it is already trained"
            )
        return pretrained.load(name, seed)

    cls = registry.load("predictors", name)
    try:
        return cls(**options)
    except TypeError as e:  # a plugin whose constructor does not take the protocol's shape
        raise ConfigError(f"bad options for predictor {name!r}: {e}") from None
