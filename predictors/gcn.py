"""The Neural Predictor's graph convolutional network (Wen et al. 2020), as published.

A cell is a DAG with one operation per node: its adjacency matrix ``A`` and one-hot node
operations ``X``. Each layer averages a forward and a backward directed graph convolution,
``H' = (relu(norm(A + I) H W1) + relu(norm(A^T + I) H W2)) / 2`` with row-normalised
adjacency, followed by dropout; the node states are mean-pooled and two bias-free linear
layers (with dropout between) give the score. It is trained with the mean squared error on
standardised accuracies by Adam with L2 weight decay and a cosine learning-rate schedule
(4 layers of 144 units, 128 hidden, batch 7, learning rate 1e-4, weight decay 3e-4, 300
epochs: the settings of NASLib's reimplementation, ``naslib/predictors/gcn.py``).

Encodings (:func:`encode`), chosen at ``fit`` from the training graphs' space:

* ``nb201``: an operation-on-node graph of the cell: input, the six edge operations, output
  (8 nodes; one-hot over input, output and the 5 operations);
* ``nb101``: the pruned cell matrix and its operations (up to 7 nodes, 5 labels);
* ``ir``: any other space, or graphs from several spaces: the compact computation graph of
  :mod:`nas.predictors.features` (its node feature rows and edges).

A search strategy, which holds genotypes rather than graphs, uses :func:`genotype_encoder`
and :class:`Surrogate`: the cell graphs above on NB201 and NB101, and on any other space
the chain of its decisions (a node per decision: the chosen option one-hot, and the
decision's position), which for macro spaces (NAS-Bench-Macro, SPOS, OFA) is the chain of
layers itself.

Optional (``cascade``): the paper's classifier-then-regressor. A classifier GCN learns which
architectures lie above the ``cascade_quantile`` of the training accuracies, the regressor is
trained on those alone, and an architecture the classifier rejects ranks below every one it
accepts (its prediction is lowered by ``CASCADE_OFFSET`` label standard deviations).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from nas.predictors.base import Predictor, check_labels
from nas.predictors.features import NODE_DIM, GraphLike, features, ref_of

from nas.errors import ConfigError
from nas.options import positive

ENCODINGS = ("nb201", "nb101", "ir")
NB201_LABELS = (
    "input",
    "output",
    "none",
    "skip_connect",
    "nor_conv_1x1",
    "nor_conv_3x3",
    "avg_pool_3x3",
)
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""The six edges of an NB201 cell, ``(from node, to node)``, in genotype order."""
NB101_LABELS = ("input", "output", "conv1x1-bn-relu", "conv3x3-bn-relu", "maxpool3x3")
CASCADE_OFFSET = 100.0


@dataclass(frozen=True)
class GCNOptions:
    """Options of ``gcn`` (defaults: the published settings, see the module docstring)."""

    hidden: int = 144
    layers: int = 4
    linear: int = 128
    epochs: int = 300
    batch: int = 7
    lr: float = 1e-4
    weight_decay: float = 3e-4
    dropout: float = 0.1
    members: int = 1
    cascade: bool = False
    cascade_quantile: float = 0.5

    def __post_init__(self) -> None:
        for k in ("hidden", "layers", "linear", "epochs", "batch", "lr", "members"):
            positive(f"gcn option {k}", getattr(self, k))
        positive("gcn option weight_decay", self.weight_decay, allow_zero=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"gcn option dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.cascade_quantile < 1.0:
            raise ConfigError(
                f"gcn option cascade_quantile must be in (0, 1), got {self.cascade_quantile}"
            )


# ------------------------------------------------------------------------------ encodings


def _nb201(arch: str) -> tuple[np.ndarray, np.ndarray]:
    from nas.search_spaces import get_space

    ops = get_space("nb201").parse(arch).ops
    adj = np.zeros((8, 8), np.float32)
    for k, (src, _) in enumerate(NB201_EDGES):
        feeders = [1 + j for j, (_, dst) in enumerate(NB201_EDGES) if dst == src]
        for f in feeders or [0]:
            adj[f, 1 + k] = 1.0
    for k, (_, dst) in enumerate(NB201_EDGES):
        if dst == 3:
            adj[1 + k, 7] = 1.0
    labels = ["input", *ops, "output"]
    x = np.eye(len(NB201_LABELS), dtype=np.float32)[[NB201_LABELS.index(op) for op in labels]]
    return adj, x


def _nb101(arch: str) -> tuple[np.ndarray, np.ndarray]:
    from nas.search_spaces import get_space

    matrix, ops = get_space("nb101").parse(arch).pruned()
    adj = np.asarray(matrix, np.float32)
    x = np.eye(len(NB101_LABELS), dtype=np.float32)[[NB101_LABELS.index(op) for op in ops]]
    return adj, x


def encode(graphs: Sequence[GraphLike], kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(adjacency, node features)`` of every graph in the encoding ``kind``."""
    if kind == "ir":
        out = []
        for f in features(graphs):
            adj = np.zeros((f.num_nodes, f.num_nodes), np.float32)
            adj[f.senders, f.receivers] = 1.0
            out.append((adj, f.nodes))
        return out
    cell = _nb201 if kind == "nb201" else _nb101
    out = []
    for g in graphs:
        ref = ref_of(g)
        if ref is None or ref.space != kind:
            got = ref.space if ref is not None else "a graph of no known space"
            raise ConfigError(f"this gcn reads {kind} cells; it cannot score {got}")
        out.append(_cached_cell(cell, ref.arch))
    return out


@functools.lru_cache(maxsize=65536)
def _cached_cell(cell, arch: str) -> tuple[np.ndarray, np.ndarray]:
    return cell(arch)


def choose_encoding(graphs: Sequence[GraphLike]) -> str:
    """``nb201`` or ``nb101`` when every graph is such a cell, else ``ir``."""
    spaces = {ref.space if ref else "" for ref in map(ref_of, graphs)}
    return spaces.pop() if len(spaces) == 1 and spaces <= {"nb201", "nb101"} else "ir"


def batch_arrays(enc: list[tuple[np.ndarray, np.ndarray]], n_max: int | None = None):
    """Padded ``(adjacency, features, node mask)`` arrays of a list of encodings."""
    m = n_max or max(a.shape[0] for a, _ in enc)
    d = enc[0][1].shape[1]
    adj = np.zeros((len(enc), m, m), np.float32)
    x = np.zeros((len(enc), m, d), np.float32)
    mask = np.zeros((len(enc), m), np.float32)
    for i, (a, f) in enumerate(enc):
        n = a.shape[0]
        adj[i, :n, :n], x[i, :n], mask[i, :n] = a, f, 1.0
    return adj, x, mask


# ------------------------------------------------------------------------------ network


def _init(key: jax.Array, d: int, o: GCNOptions) -> dict[str, Any]:
    def glorot(k, shape):
        lim = np.sqrt(6.0 / (shape[0] + shape[1]))
        return jax.random.uniform(k, shape, jnp.float32, -lim, lim)

    keys = jax.random.split(key, 2 * o.layers + 2)
    dims = [d] + [o.hidden] * o.layers
    layers = [
        (glorot(keys[2 * i], (dims[i], o.hidden)), glorot(keys[2 * i + 1], (dims[i], o.hidden)))
        for i in range(o.layers)
    ]
    return {
        "gcn": layers,
        "fc1": glorot(keys[-2], (o.hidden, o.linear)),
        "fc2": glorot(keys[-1], (o.linear, 1)),
    }


def _normalise(a: jax.Array) -> jax.Array:
    return a / jnp.maximum(a.sum(-1, keepdims=True), 1e-9)


def _forward(params, adj, x, mask, key, rate: float) -> jax.Array:
    """Scores ``(B,)``; dropout with ``key`` (``None``: inference)."""
    eye = jnp.eye(adj.shape[-1])[None] * mask[:, :, None]
    fwd = _normalise(adj + eye)
    bwd = _normalise(jnp.swapaxes(adj, 1, 2) + eye)

    def drop(h, k):
        if key is None or rate == 0.0:
            return h
        keep = jax.random.bernoulli(k, 1.0 - rate, h.shape)
        return jnp.where(keep, h / (1.0 - rate), 0.0)

    n_keys = len(params["gcn"]) + 1
    keys = jax.random.split(key, n_keys) if key is not None else [None] * n_keys
    h = x
    for i, (w1, w2) in enumerate(params["gcn"]):
        h = 0.5 * (jax.nn.relu(fwd @ (h @ w1)) + jax.nn.relu(bwd @ (h @ w2)))
        h = drop(h, keys[i]) * mask[:, :, None]
    pooled = h.sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1.0)
    return (drop(pooled @ params["fc1"], keys[-1]) @ params["fc2"])[:, 0]


@functools.cache
def _optimizer(lr: float, weight_decay: float, steps: int) -> optax.GradientTransformation:
    """Adam with L2 weight decay added to the gradient (PyTorch's ``Adam(weight_decay=)``)
    on a cosine schedule; one object per setting, so the jitted step compiles once."""
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1))),
    )


@functools.partial(jax.jit, static_argnames=("opt", "rate", "logistic"))
def _step(params, state, adj, x, mask, y, key, opt, rate: float, logistic: bool):
    def loss_fn(p):
        s = _forward(p, adj, x, mask, key, rate)
        if logistic:
            return jnp.mean(optax.sigmoid_binary_cross_entropy(s, y))
        return jnp.mean((s - y) ** 2)

    grads = jax.grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state


_predict = jax.jit(lambda p, adj, x, mask: _forward(p, adj, x, mask, None, 0.0))


def train_gcn(arrays, y: np.ndarray, o: GCNOptions, seed: int, logistic: bool = False):
    """One GCN fitted on ``arrays`` (:func:`batch_arrays`) and targets ``y``."""
    adj, x, mask = arrays
    n = len(y)
    bs = min(o.batch, n)
    per_epoch = max(n // bs, 1)  # the last incomplete batch is dropped, as published
    opt = _optimizer(float(o.lr), float(o.weight_decay), o.epochs * per_epoch)
    key = jax.random.PRNGKey(seed)
    params = _init(key, x.shape[-1], o)
    state = opt.init(params)
    rng = np.random.default_rng(seed)
    yj = np.asarray(y, np.float32)
    for _ in range(o.epochs):
        order = rng.permutation(n)
        for b in range(per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            key, sub = jax.random.split(key)
            params, state = _step(
                params,
                state,
                adj[idx],
                x[idx],
                mask[idx],
                yj[idx],
                sub,
                opt,
                float(o.dropout),
                logistic,
            )
    return params


def predict_gcn(params, arrays, chunk: int = 4096) -> np.ndarray:
    adj, x, mask = arrays
    out = [
        np.asarray(_predict(params, adj[i : i + chunk], x[i : i + chunk], mask[i : i + chunk]))
        for i in range(0, len(adj), chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# ------------------------------------------------------------------------------ for searchers


def genotype_encoder(space) -> Callable[[Any], tuple[np.ndarray, np.ndarray]]:
    """Genotype -> ``(adjacency, node features)`` for a search space (module docstring)."""
    if space.name in ("nb201", "nb101"):
        cell = _nb201 if space.name == "nb201" else _nb101
        return lambda g: _cached_cell(cell, g.to_str())
    arity = [n for _, n in space.choices()]
    width = max(arity)
    k = len(arity)
    adj = np.eye(k, k, 1, dtype=np.float32)  # decision i feeds decision i + 1
    position = (np.arange(k, dtype=np.float32) / max(k - 1, 1))[:, None]

    def chain(g) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((k, width), np.float32)
        x[np.arange(k), np.asarray(space.to_indices(g), int)] = 1.0
        return adj, np.concatenate([x, position], 1)

    return chain


class Surrogate:
    """``members`` GCNs on encoded genotypes (:func:`genotype_encoder`): a search's
    surrogate. ``predict`` gives the mean and the members' spread, in the targets' units."""

    def __init__(self, options: GCNOptions) -> None:
        self.options = options
        self.members: list[dict[str, Any]] = []
        self.classifiers: list[dict[str, Any]] = []
        self.mean, self.scale = 0.0, 1.0

    def fit(self, enc: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray, seed: int) -> Surrogate:
        y = np.asarray(y, np.float64)
        arrays = batch_arrays(enc)
        self.mean, self.scale = float(y.mean()), float(y.std() or 1.0)
        t = (y - self.mean) / self.scale
        o = self.options
        self.members, self.classifiers = [], []
        for m in range(o.members):
            s = seed + 1000 * m
            if o.cascade:
                good = (y >= np.quantile(y, o.cascade_quantile)).astype(np.float32)
                self.classifiers.append(train_gcn(arrays, good, o, s + 1, logistic=True))
                keep = np.flatnonzero(good > 0)
                self.members.append(train_gcn(tuple(a[keep] for a in arrays), t[keep], o, s))
            else:
                self.members.append(train_gcn(arrays, t, o, s))
        return self

    def scores(self, enc: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """``(members, n)`` standardised scores (cascade rejections lowered)."""
        arrays = batch_arrays(enc)
        out = np.stack([predict_gcn(p, arrays) for p in self.members]).astype(np.float64)
        for i, c in enumerate(self.classifiers):
            out[i] -= CASCADE_OFFSET * (predict_gcn(c, arrays) < 0.0)
        return out

    def predict(self, enc: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        s = self.scores(enc)
        return s.mean(0) * self.scale + self.mean, s.std(0) * self.scale


# ------------------------------------------------------------------------------ predictor


class GCNPredictor(Predictor):
    """The Neural Predictor's GCN (Wen et al. 2020) over cell graphs; see the module
    docstring. Options: :class:`GCNOptions`."""

    name: ClassVar[str] = "gcn"
    Options: ClassVar[type] = GCNOptions

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        self.kind = ""
        self.surrogate = Surrogate(self.config)

    def _arrays(self, graphs: Sequence[GraphLike]):
        return batch_arrays(encode(graphs, self.kind))

    def fit(self, graphs, y, groups=None) -> GCNPredictor:
        y, _ = check_labels(self.name, graphs, y, groups)
        self.kind = choose_encoding(graphs)
        self.surrogate = Surrogate(self.config).fit(encode(graphs, self.kind), y, self.seed)
        self.ood_detector.fit(self._ood_features(graphs), seed=self.seed)
        self.fitted = True
        return self

    def predict(self, graphs):
        self._require_fitted()
        if not len(graphs):
            return np.zeros(0), np.zeros(0)
        return self.surrogate.predict(encode(graphs, self.kind))

    def _ood_features(self, graphs):
        adj, x, mask = self._arrays(graphs)
        n = mask.sum(1, keepdims=True)
        return np.concatenate([x.sum(1) / np.maximum(n, 1.0), np.log2(n + 1) / 8.0], 1)

    def _state(self):
        arrays = {}
        sur = self.surrogate
        for tag, models in (("m", sur.members), ("c", sur.classifiers)):
            for i, p in enumerate(models):
                for path, leaf in jax.tree_util.tree_flatten_with_path(p)[0]:
                    arrays[f"{tag}{i}." + jax.tree_util.keystr(path)] = np.asarray(leaf)
        meta = {"kind": self.kind, "y_mean": sur.mean, "y_scale": sur.scale}
        meta.update(members=len(sur.members), classifiers=len(sur.classifiers))
        return meta, arrays

    def _restore(self, meta, arrays):
        from nas.errors import DataError

        if meta.get("kind") not in ENCODINGS:
            raise DataError(f"saved gcn predictor has an unknown encoding {meta.get('kind')!r}")
        self.kind = meta["kind"]
        sur = self.surrogate
        sur.mean, sur.scale = float(meta["y_mean"]), float(meta["y_scale"])
        d = {"nb201": len(NB201_LABELS), "nb101": len(NB101_LABELS), "ir": NODE_DIM}[self.kind]
        template = _init(jax.random.PRNGKey(0), d, self.config)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)

        def load(tag: str, i: int):
            vals = []
            for path, leaf in leaves:
                k = f"{tag}{i}." + jax.tree_util.keystr(path)
                if k not in arrays or arrays[k].shape != leaf.shape:
                    raise DataError(f"saved gcn predictor lacks tensor {k!r} of shape {leaf.shape}")
                vals.append(jnp.asarray(arrays[k]))
            return jax.tree_util.tree_unflatten(treedef, vals)

        sur.members = [load("m", i) for i in range(int(meta["members"]))]
        sur.classifiers = [load("c", i) for i in range(int(meta["classifiers"]))]
