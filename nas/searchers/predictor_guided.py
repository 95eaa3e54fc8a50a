"""Predictor-guided search: the Neural Predictor (Wen et al. 2020) and BANANAS (White et al. 2021).

Both fit a surrogate on the architectures evaluated so far and spend the remaining budget on
the candidates it ranks best. The Neural Predictor's default surrogate is the paper's graph
convolutional network over the cell graph (:mod:`nas.predictors.gcn`); BANANAS' (and
``predictor="ensemble"``) is a small ensemble of MLPs in numpy
(:class:`MLPEnsemble`), trained full-batch with Adam from different initialisations; the
spread of its members is the uncertainty that BANANAS' acquisition functions use. It
trains on an architecture encoding (the space's one-hot encoding; on NAS-Bench-201 also the
path encoding of BANANAS: which input-to-output paths, with which operations, the cell has)
and fits the normal scores of the accuracies' ranks, so that a few broken architectures do
not flatten the differences among the good ones. Any predictor of the ``predictors`` package
can replace it (``predictor="gbm"``).

Every proposal is a pure function of the seed and the results told so far (in order), so a
searcher's state is small: its random state, the told results and the queued proposals. A
restored searcher refits the same surrogate and proposes exactly what the original would
have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy.special import ndtr, ndtri
from threadpoolctl import threadpool_limits

from nas.errors import ConfigError
from nas.options import build_options, positive
from nas.searchers.base import Searcher, Values
from nas.space import Genotype, SearchSpace

ACQUISITIONS = ("ei", "ucb", "ts", "mean")
TARGETS = ("raw", "rank", "log-error")
ENCODINGS = ("auto", "onehot", "path", "path+onehot")
Surrogate = Callable[[Sequence[Genotype]], tuple[np.ndarray, np.ndarray]]


# ----------------------------------------------------------------------------- encodings

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Input-to-output paths of the NB201 cell as edge positions in the genotype's op tuple
# (edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2).
NB201_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


def nb201_path_encoding(ops: Sequence[str]) -> np.ndarray:
    """BANANAS' path encoding of an NB201 cell (100 binary features).

    One feature per (path, sequence of operations on it); ``none`` cuts a path, so only the
    four live operations count: 4 + 16 + 16 + 64 features for the paths 0-3, 0-1-3, 0-2-3
    and 0-1-2-3.
    """
    live = NB201_OPS[1:]
    out = np.zeros(sum(len(live) ** len(p) for p in NB201_PATHS), np.float32)
    offset = 0
    for path in NB201_PATHS:
        names = [ops[e] for e in path]
        if "none" not in names:
            index = 0
            for name in names:
                index = index * len(live) + live.index(name)
            out[offset + index] = 1.0
        offset += len(live) ** len(path)
    return out


def make_encoder(space: SearchSpace, encoding: str = "auto") -> Callable[[Genotype], np.ndarray]:
    """Genotype -> feature vector. ``auto`` is ``path+onehot`` on NB201, else ``onehot``."""
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
    if encoding == "auto":
        encoding = "path+onehot" if space.name == "nb201" else "onehot"
    if encoding == "onehot":
        return lambda g: np.asarray(space.encode(g), np.float32)
    if space.name != "nb201":
        raise ConfigError(f"the path encoding exists for nb201 only, not {space.name!r}")
    if encoding == "path":
        return lambda g: nb201_path_encoding(g.ops)  # type: ignore[attr-defined]
    return lambda g: np.concatenate(
        [nb201_path_encoding(g.ops), np.asarray(space.encode(g), np.float32)]  # type: ignore[attr-defined]
    )


# ----------------------------------------------------------------------------- surrogate


class MLPEnsemble:
    """``members`` ReLU MLPs trained together (batched in numpy) by full-batch Adam on MSE.

    Members differ only in their initialisation. Targets are standardised. ``fit`` is a pure
    function of its inputs and ``seed``; it runs single-threaded (BLAS threads only contend on
    matrices this small) and takes about 0.1 s for a hundred architectures.

    Args:
        members: ensemble size.
        hidden: widths of the hidden layers (at least one).
        epochs: full-batch Adam steps.
        lr: Adam learning rate.
        weight_decay: L2 penalty on the weights.
    """

    def __init__(
        self,
        members: int = 5,
        hidden: Sequence[int] = (32, 32),
        epochs: int = 200,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
    ) -> None:
        if not hidden or members < 1:
            raise ConfigError(
                f"MLPEnsemble needs members >= 1 and a hidden layer, got {members}, {hidden}"
            )
        self.members = members
        self.hidden = tuple(int(h) for h in hidden)
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.views: list[tuple[np.ndarray, np.ndarray]] = []
        self.y_mean = 0.0
        self.y_std = 1.0

    def _layout(self, d: int) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """A flat float32 parameter vector and (weight, bias) views into it, per layer.

        The first layer of every member is one ``(d, members * h)`` matrix; later layers are
        ``(members, a, b)`` stacks with ``(members, 1, b)`` biases.
        """
        m, sizes = self.members, [*self.hidden, 1]
        shapes = [((d, m * sizes[0]), (m * sizes[0],))]
        shapes += [((m, a, b), (m, 1, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        flat = np.zeros(sum(math.prod(w) + math.prod(b) for w, b in shapes), np.float32)
        views, pos = [], 0
        for ws, bs in shapes:
            w = flat[pos : pos + math.prod(ws)].reshape(ws)
            pos += w.size
            b = flat[pos : pos + math.prod(bs)].reshape(bs)
            pos += b.size
            views.append((w, b))
        return flat, views

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer, ``(members, n, width)``; the last is the output."""
        n, m, h1 = len(x), self.members, self.hidden[0]
        (w0, c0), *rest = self.views
        acts = [np.maximum(x @ w0 + c0, 0.0).reshape(n, m, h1).transpose(1, 0, 2)]
        for i, (w, c) in enumerate(rest):
            acts.append(np.matmul(acts[-1], w) + c)
            if i < len(rest) - 1:
                np.maximum(acts[-1], 0.0, out=acts[-1])
        return acts

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> MLPEnsemble:
        with threadpool_limits(1):
            return self._fit(x, y, seed)

    def _fit(self, x: np.ndarray, y: np.ndarray, seed: int) -> MLPEnsemble:
        rng = np.random.default_rng(seed)
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float64)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) or 1.0
        t = ((y - self.y_mean) / self.y_std).astype(np.float32)[None, :, None]
        n, m, h1 = len(x), self.members, self.hidden[0]
        theta, self.views = self._layout(x.shape[1])
        grad, gviews = self._layout(x.shape[1])
        decay, dviews = self._layout(x.shape[1])
        for (w, _), (dw, _) in zip(self.views, dviews, strict=True):
            fan_in = w.shape[0] if w.ndim == 2 else w.shape[1]
            w[...] = rng.normal(0.0, math.sqrt(2.0 / fan_in), w.shape)  # He; biases at zero
            dw[...] = 2.0 * self.weight_decay
        mom = np.zeros_like(theta)
        vel = np.zeros_like(theta)
        b1, b2, eps = 0.9, 0.999, 1e-8
        xt = np.ascontiguousarray(x.T)
        for step in range(1, self.epochs + 1):
            acts = self._forward(x)
            d = (2.0 / n) * (acts[-1] - t)
            for i in range(len(self.views) - 1, 0, -1):
                gw, gb = gviews[i]
                np.matmul(acts[i - 1].transpose(0, 2, 1), d, out=gw)
                gb[...] = d.sum(axis=1, keepdims=True)
                d = np.matmul(d, self.views[i][0].transpose(0, 2, 1)) * (acts[i - 1] > 0)
            d0 = d.transpose(1, 0, 2).reshape(n, m * h1)
            gw, gb = gviews[0]
            np.matmul(xt, d0, out=gw)
            gb[...] = d0.sum(axis=0)
            grad += decay * theta
            mom *= b1
            mom += (1 - b1) * grad
            vel *= b2
            vel += (1 - b2) * grad * grad
            lr = self.lr * math.sqrt(1 - b2**step) / (1 - b1**step)
            theta -= lr * mom / (np.sqrt(vel) + eps)
        return self

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """``(members, n)`` predictions in the targets' units."""
        with threadpool_limits(1):
            out = self._forward(np.asarray(x, np.float32))[-1]
        return out[..., 0].astype(np.float64) * self.y_std + self.y_mean

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of the members' predictions."""
        p = self.predict_members(x)
        return p.mean(0), p.std(0)


def acquire(
    kind: str,
    mean: np.ndarray,
    std: np.ndarray,
    best: float,
    rng: np.random.Generator,
    ucb_beta: float = 1.0,
) -> np.ndarray:
    """Acquisition values (higher is better) from a predicted mean and spread per candidate.

    ``ei``: expected improvement over ``best`` under a normal with that mean and spread;
    ``ucb``: mean + ``ucb_beta`` x spread; ``ts``: independent Thompson sampling (one normal
    draw per candidate, BANANAS' ITS); ``mean``: the mean alone.
    """
    mu = np.asarray(mean, np.float64)
    sd = np.asarray(std, np.float64)
    if kind == "mean":
        return mu
    if kind == "ucb":
        return mu + ucb_beta * sd
    if kind == "ts":
        return mu + sd * rng.standard_normal(mu.shape)
    if kind == "ei":
        sd = sd + 1e-9
        z = (mu - best) / sd
        return (mu - best) * ndtr(z) + sd * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    raise ConfigError(f"unknown acquisition {kind!r}; choose one of {list(ACQUISITIONS)}")


def transform_targets(y: np.ndarray, kind: str) -> np.ndarray:
    """What the surrogate fits, monotone in ``y``.

    ``raw``: ``y``; ``rank``: normal scores of the ranks (ties share a mean rank), so that a
    few very bad architectures do not squash the differences among the good ones;
    ``log-error``: ``-log(100 - y)`` for accuracies in percent.
    """
    y = np.asarray(y, np.float64)
    if kind == "raw":
        return y
    if kind == "rank":
        ranks = np.empty(len(y))
        order = np.argsort(y, kind="stable")
        ranks[order] = np.arange(len(y), dtype=np.float64)
        for v in np.unique(y):  # ties: the mean rank
            ranks[y == v] = ranks[y == v].mean()
        return ndtri((ranks + 0.5) / len(y))
    if kind == "log-error":
        return -np.log(np.maximum(100.0 - y, 1e-3))
    raise ConfigError(f"unknown target transform {kind!r}; choose one of {list(TARGETS)}")


# ----------------------------------------------------------------------------- searchers


def _external(predictor: str | None) -> bool:
    """Whether the surrogate is a predictor of the ``predictors`` package (not the MLP
    ensemble, named ``ensemble`` or left out)."""
    return predictor not in (None, "ensemble")


@dataclass(frozen=True)
class PredictorOptions:
    """Settings shared by the predictor-guided strategies.

    Attributes:
        encoding: ``auto``, ``onehot``, ``path`` or ``path+onehot`` (NB201); ``auto`` is
            ``path+onehot`` on NB201, else ``onehot``.
        target: what the surrogate fits: ``rank`` (normal scores of the ranks), ``raw`` or
            ``log-error`` (see :func:`transform_targets`).
        predictor: a registered predictor (``gcn``, ``gbm``, ``mlp``, ...) or a pretrained
            one (``pretrained:gennape``) instead of the MLP ensemble (``ensemble`` or
            ``None``); ``predictor_options`` are its options.
        members, hidden, epochs, lr: the MLP ensemble.
    """

    encoding: str = "auto"
    target: str = "rank"
    predictor: str | None = None
    predictor_options: dict[str, Any] = field(default_factory=dict)
    members: int = 5
    hidden: tuple[int, ...] = (32, 32)
    epochs: int = 200
    lr: float = 0.01

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(
                f"unknown encoding {self.encoding!r}; choose one of {list(ENCODINGS)}"
            )
        if self.target not in TARGETS:
            raise ConfigError(
                f"unknown target transform {self.target!r}; choose one of {list(TARGETS)}"
            )
        if _external(self.predictor) and not self.predictor.startswith("pretrained:"):
            from nas import registry

            registry.entry("predictors", self.predictor)  # unknown: an error naming the valid ones
        if self.members < 1 or not self.hidden or min(self.hidden) < 1:
            raise ConfigError(
                f"the MLP ensemble needs members >= 1 and hidden widths >= 1, got "
                f"{self.members}, {list(self.hidden)}"
            )
        positive("epochs", self.epochs)
        positive("lr", self.lr)


class _PredictorSearcher(Searcher):
    """Shared bookkeeping: told history, proposals made, random initial samples, the fit.

    The surrogate fits the first objective's oriented value (larger is better): accuracy as
    it is, a cost such as FLOPs negated. One objective only.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        self.encode = make_encoder(self.space, o.encoding)
        if _external(o.predictor):
            from nas.predictors.base import get_predictor

            get_predictor(o.predictor, seed=0, **o.predictor_options)  # bad options: now
        self.ensemble = dict(members=o.members, hidden=tuple(o.hidden), epochs=o.epochs, lr=o.lr)
        self.n_asked = 0
        self.history: list[tuple[str, float | None]] = []  # told, in order (None: failed)
        self.proposed: set[str] = set()  # every architecture asked (told or outstanding)
        self._features: dict[str, np.ndarray] = {}

    # -- helpers

    def _feature(self, g: Genotype) -> np.ndarray:
        key = g.to_str()
        f = self._features.get(key)
        if f is None:
            f = self._features[key] = self.encode(g)
        return f

    def _fresh_random(self) -> Genotype:
        """A uniform sample not proposed before (a repeat only when 100 draws all were)."""
        g = self.space.sample(self.rng)
        for _ in range(100):
            if g.to_str() not in self.proposed:
                break
            g = self.space.sample(self.rng)
        return g

    def _propose(self, g: Genotype) -> Genotype:
        self.proposed.add(g.to_str())
        return g

    def _data(self) -> tuple[list[Genotype], np.ndarray]:
        ok = [(a, v) for a, v in self.history if v is not None]
        genotypes = [self.space.parse(a) for a, _ in ok]
        return genotypes, np.array([v for _, v in ok], np.float64)

    def _fit(self, genotypes: list[Genotype], y: np.ndarray, seed: int) -> Surrogate:
        """A function from genotypes to the predicted (transformed) objective and its spread."""
        t = transform_targets(y, self.options.target)
        if self.options.predictor == "gcn":
            return self._fit_gcn(genotypes, t, seed)
        if _external(self.options.predictor):
            return self._fit_external(genotypes, t, seed)
        x = np.stack([self._feature(g) for g in genotypes])
        model = MLPEnsemble(**self.ensemble).fit(x, t, seed=seed)  # type: ignore[arg-type]

        def predict(cands: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray]:
            return model.predict(np.stack([self._feature(g) for g in cands]))

        return predict

    def _fit_gcn(self, genotypes: list[Genotype], t: np.ndarray, seed: int) -> Surrogate:
        """The Neural Predictor's GCN on the genotypes' cell graphs (or decision chains)."""
        from nas.predictors.gcn import GCNOptions, Surrogate, genotype_encoder

        encode = genotype_encoder(self.space)
        options = build_options(GCNOptions, self.options.predictor_options, "predictor_options")
        model = Surrogate(options).fit([encode(g) for g in genotypes], t, seed)
        return lambda cands: model.predict([encode(g) for g in cands])

    def _fit_external(self, genotypes: list[Genotype], t: np.ndarray, seed: int) -> Surrogate:
        """A predictor of the ``predictors`` package, fitted on lazily expanded graphs."""
        from nas import registry
        from nas.predictors import ArchRef, get_predictor

        dataset = self.space.default_dataset
        # A registered space's architectures travel as references (their graph features
        # are cached); another space's (a test's, an unregistered plugin's) as graphs.
        known = self.space.name in registry.names("spaces")

        def refs(gs: Sequence[Genotype]) -> list:
            if not known:
                return [self.space.to_graph(g, dataset) for g in gs]
            return [ArchRef(self.space.name, g.to_str(), dataset) for g in gs]

        model = get_predictor(self.options.predictor, seed=seed, **self.options.predictor_options)
        model.fit(refs(genotypes), t)

        def predict(cands: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray]:
            mean, std = model.predict(refs(cands))
            return np.asarray(mean, np.float64), np.asarray(std, np.float64)

        return predict

    @property
    def n_ok(self) -> int:
        return sum(v is not None for _, v in self.history)

    # -- protocol

    def tell(self, genotype: Genotype, values: Values | None) -> None:
        super().tell(genotype, values)
        value = None if values is None else float(values[0])
        if value is not None and not math.isfinite(value):
            value = None
        self.proposed.add(genotype.to_str())
        self.history.append((genotype.to_str(), value))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "n_asked": self.n_asked,
            "history": [[a, v] for a, v in self.history],
            "proposed": sorted(self.proposed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.n_asked = int(state["n_asked"])
        self.history = [(str(a), None if v is None else float(v)) for a, v in state["history"]]
        self.proposed = set(state["proposed"])


@dataclass(frozen=True)
class BananasOptions(PredictorOptions):
    """BANANAS' settings (and those of :class:`PredictorOptions`).

    Attributes:
        n_init: uniform samples before the first fit (at least 2 results are needed).
        batch_size: proposals per fit.
        acquisition: ``ei`` (expected improvement), ``ucb``, ``ts`` (Thompson) or ``mean``.
        ucb_beta: the spread's weight for ``ucb``.
        n_parents: best architectures mutated into candidates.
        n_mutations: mutations of each parent.
        max_edits: the most decisions one candidate changes from its parent.
        n_random: uniform samples added to the candidates.
    """

    n_init: int = 10
    batch_size: int = 2
    acquisition: str = "ei"
    ucb_beta: float = 1.0
    n_parents: int = 10
    n_mutations: int = 30
    max_edits: int = 2
    n_random: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.acquisition not in ACQUISITIONS:
            raise ConfigError(
                f"unknown acquisition {self.acquisition!r}; choose one of {list(ACQUISITIONS)}"
            )
        if self.batch_size < 1 or self.n_init < 0:
            raise ConfigError(
                f"bananas: batch_size must be >= 1 and n_init >= 0, got {self.batch_size}, "
                f"{self.n_init}"
            )
        for name in ("n_parents", "n_mutations", "max_edits"):
            positive(f"bananas {name}", getattr(self, name))
        positive("bananas n_random", self.n_random, allow_zero=True)


class Bananas(_PredictorSearcher):
    """BANANAS: an ensemble predictor and an acquisition function over mutated candidates.

    The first ``n_init`` proposals are uniform samples. After that, whenever its queue of
    proposals is empty, the searcher fits the ensemble on every result told so far, builds
    candidates (each of the ``n_parents`` best architectures mutated ``n_mutations`` times
    with one to ``max_edits`` decisions changed, plus ``n_random`` uniform samples), scores
    them with the acquisition function and queues the ``batch_size`` best not yet proposed.
    It never waits for outstanding results, so several workers can ask at once; with
    ``batch_size`` 1 it refits after every result. Options: :class:`BananasOptions`.
    """

    name = "bananas"
    Options: ClassVar[type] = BananasOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue: list[str] = []
        self.n_fits = 0

    def _candidates(self, data: list[tuple[Genotype, float]]) -> list[Genotype]:
        parents = [g for g, _ in sorted(data, key=lambda gv: -gv[1])[: self.options.n_parents]]
        out: dict[str, Genotype] = {}
        for p in parents:
            for _ in range(self.options.n_mutations):
                c = p
                for _ in range(int(self.rng.integers(1, self.options.max_edits + 1))):
                    c = self.space.mutate(c, self.rng)
                out.setdefault(c.to_str(), c)
        for _ in range(self.options.n_random):
            c = self.space.sample(self.rng)
            out.setdefault(c.to_str(), c)
        return [g for a, g in out.items() if a not in self.proposed]

    def _refill(self) -> None:
        genotypes, y = self._data()
        predict = self._fit(genotypes, y, seed=int(self.rng.integers(2**31)))
        self.n_fits += 1
        cands = self._candidates(list(zip(genotypes, y.tolist(), strict=True)))
        if not cands:
            return
        score = acquire(
            self.options.acquisition,
            *predict(cands),
            float(transform_targets(y, self.options.target).max()),
            self.rng,
            self.options.ucb_beta,
        )
        order = np.argsort(-score, kind="stable")[: self.options.batch_size]
        self.queue = [cands[int(i)].to_str() for i in order]

    def ask(self) -> Genotype:
        self.n_asked += 1
        while self.queue:
            a = self.queue.pop(0)
            if a not in self.proposed:
                return self._propose(self.space.parse(a))
        if self.n_asked <= self.options.n_init or self.n_ok < 2:
            return self._propose(self._fresh_random())
        self._refill()
        if not self.queue:
            return self._propose(self._fresh_random())
        return self._propose(self.space.parse(self.queue.pop(0)))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": list(self.queue), "n_fits": self.n_fits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.queue = [str(a) for a in state["queue"]]
        self.n_fits = int(state["n_fits"])


@dataclass(frozen=True)
class NeuralPredictorOptions(PredictorOptions):
    """The Neural Predictor's settings (and those of :class:`PredictorOptions`).

    Attributes:
        predictor: the surrogate; by default ``gcn``, the paper's graph convolutional
            network (:mod:`nas.predictors.gcn`); ``ensemble`` is the MLP ensemble.
        n_train: uniform samples to train on (default: ``train_fraction`` of the budget).
        train_fraction: ``n_train`` as a fraction of the search's budget.
        pool_size: candidates ranked.
        refit_every: results between refits after the first (0: never, as in the paper).
    """

    predictor: str | None = "gcn"
    n_train: int | None = None
    train_fraction: float = 0.3
    pool_size: int = 10_000
    refit_every: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_train is not None and self.n_train < 2:
            raise ConfigError(f"neural-predictor: n_train must be at least 2, got {self.n_train}")
        if not 0 < self.train_fraction <= 1:
            raise ConfigError(
                f"neural-predictor: train_fraction must be in (0, 1], got {self.train_fraction}"
            )
        positive("neural-predictor pool_size", self.pool_size)
        positive("neural-predictor refit_every", self.refit_every, allow_zero=True)


class NeuralPredictor(_PredictorSearcher):
    """The Neural Predictor: fit on ``n_train`` random architectures, rank a pool, go down it.

    The first ``n_train`` proposals are uniform samples (``n_train`` defaults to
    ``train_fraction`` of the search's budget). Once they are proposed, the surrogate (the
    GCN unless ``predictor`` says otherwise) is fitted on the results told so far (all ``n_train`` of them when evaluations run one at a
    time), it ranks a pool of candidates (the whole space when it has at most ``pool_size``
    architectures, else ``pool_size`` uniform samples) and every later proposal is the next
    best-ranked architecture not yet proposed. With ``refit_every`` > 0 the surrogate is
    refitted and the pool re-ranked after that many further results. Options:
    :class:`NeuralPredictorOptions`.
    """

    name = "neural-predictor"
    Options: ClassVar[type] = NeuralPredictorOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        budget = self.context.budget
        self.n_train = o.n_train or (max(2, round(o.train_fraction * budget)) if budget else 20)
        self.fit_at: int | None = None  # results told when the ranking was made
        self.fit_seed = 0
        self.pool_seed = 0
        self.position = 0
        self._ranking: list[str] | None = None

    def _pool(self, seed: int) -> list[Genotype]:
        if self.space.size <= self.options.pool_size:
            return [
                self.space.from_indices(idx)
                for idx in np.ndindex(*(n for _, n in self.space.choices()))
            ]
        rng = np.random.default_rng(seed)
        out: dict[str, Genotype] = {}
        for _ in range(self.options.pool_size):
            g = self.space.sample(rng)
            out.setdefault(g.to_str(), g)
        return list(out.values())

    def _rank(self) -> list[str]:
        """The pool sorted by the prediction of the ensemble fitted on the first results."""
        assert self.fit_at is not None
        told = self.history[: self.fit_at]
        ok = [(a, v) for a, v in told if v is not None]
        predict = self._fit(
            [self.space.parse(a) for a, _ in ok], np.array([v for _, v in ok]), self.fit_seed
        )
        pool = self._pool(self.pool_seed)
        mean = np.concatenate([predict(pool[i : i + 4096])[0] for i in range(0, len(pool), 4096)])
        order = np.argsort(-mean, kind="stable")
        return [pool[int(i)].to_str() for i in order]

    def _start_ranking(self) -> None:
        self.fit_at = len(self.history)
        self.fit_seed = int(self.rng.integers(2**31))
        self.pool_seed = int(self.rng.integers(2**31))
        self.position = 0
        self._ranking = None

    def ask(self) -> Genotype:
        self.n_asked += 1
        if self.n_asked <= self.n_train or self.n_ok < 2:
            return self._propose(self._fresh_random())
        if self.fit_at is None or (
            self.options.refit_every > 0
            and len(self.history) - self.fit_at >= self.options.refit_every
        ):
            self._start_ranking()
        if self._ranking is None:
            self._ranking = self._rank()
        while self.position < len(self._ranking):
            a = self._ranking[self.position]
            self.position += 1
            if a not in self.proposed:
                return self._propose(self.space.parse(a))
        return self._propose(self._fresh_random())  # the pool is exhausted

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "fit_at": self.fit_at,
            "fit_seed": self.fit_seed,
            "pool_seed": self.pool_seed,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fit_at = None if state["fit_at"] is None else int(state["fit_at"])
        self.fit_seed = int(state["fit_seed"])
        self.pool_seed = int(state["pool_seed"])
        self.position = int(state["position"])
        self._ranking = None  # recomputed on demand: the fit is deterministic
