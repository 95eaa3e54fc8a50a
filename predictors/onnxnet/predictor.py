"""The ONNX-Net-style predictor: ONNX text, a pretrained sentence encoder, a ranking head.

Pipeline for one architecture: IR graph -> text (one line per node in the default ``nodes``
mode, :mod:`nas.predictors.onnxnet.nodes`; or the exported ONNX graph written in chunks,
:mod:`nas.predictors.onnxnet.text`) -> all-MiniLM-L6-v2 embeddings in JAX
(:mod:`nas.predictors.onnxnet.encoder`) -> a pooled feature vector -> an ensemble of small MLP
heads trained with a pairwise logistic ranking loss (RankNet) on pairs from the same
benchmark only (accuracy scales differ across benchmarks), which is what lets it score
spaces it never saw. The ensemble's spread is the uncertainty; a linear map fitted on the
training data turns scores into accuracy-like numbers. A prediction is bit-identical
whichever architectures share its batch and in whichever process it is made (fixed batch
shapes in the encoder and the heads).

Modes (how a network becomes fixed-size features):

* ``nodes`` (default): one line per IR node (op, attributes, output shape, feeding ops),
  each distinct line embedded once, pooled as the mean, the mean over edges of the two
  ends' product and the depth-weighted mean (1152 numbers): a fresh cell of a known space
  needs no encoder pass;
* ``blocks``: the exported ONNX graph as stats, skeleton and each distinct block once,
  chunks pooled by the share of nodes they stand for: ``[stats, skeleton, pooled blocks]``
  (1152);
* ``stats``: the stats line alone (384);
* ``flat``: the plain node-by-node text in chunks, pooled (384);
* ``flat1``: the plain text truncated to its first chunk (384).

With ``numeric`` (default on), three numbers (log10 of parameters, multiply-adds and node
count, read from the ONNX graph or, in ``nodes`` mode, the IR graph) are appended to the text
features, and with ``graph_numbers`` (default on) the IR graph's thirteen global features
(:data:`nas.predictors.features.GLOBALS`: log parameters and MACs, node and conv counts, the
longest and shortest conv paths, mean channels, shares of 1x1, depthwise and pooling ops,
spatial depth); after standardisation the numbers are scaled by ``numeric_weight`` (default 40): a sentence encoder reads "0.587 M
parameters" only vaguely, and size and depth are the strongest signals (what the text and
the numbers each add: ``benchmarks/onnxnet_options.py``). ``numeric=False,
graph_numbers=False`` is the pure text predictor.

Compute prior and unseen spaces (options ``prior`` and ``transfer``, as in GENNAPE): each
head's score is ``a * prior + learned``, where the prior is the compute prior of
:mod:`nas.predictors.gennape.prior` on the IR (default ``flops_depth``: log live MACs and log
spatial depth, fitted on the training labels) and ``a`` a per-head scale learned with the
heads. A space the predictor was not trained on gets the prior alone by default
(``transfer``; :mod:`nas.predictors.transfer`).
``prior="none"`` is the pure text predictor.

Embeddings are cached on disk by text hash and each architecture's chunk list by
(space, dataset, arch), in ``$NAS_CACHE_DIR`` or ``~/.cache/nas``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from nas.predictors.base import Decomposition, Predictor, check_labels
from nas.predictors.features import (
    GLOBAL_DIM,
    GraphLike,
    as_graph,
    cache_dir,
    global_matrix,
    ref_of,
)
from nas.predictors.features import features as graph_features
from nas.predictors.gennape.prior import EffectiveFlops
from nas.predictors.onnxnet.encoder import DIM, EmbeddingCache, MiniLM, text_key
from nas.predictors.onnxnet.head import init_heads, learned_rows, scores, step
from nas.predictors.onnxnet.nodes import LINES_VERSION, NodeTextStore
from nas.predictors.onnxnet.text import Chunk, describe_flat, describe_onnx
from nas.predictors.transfer import (
    PRIORS,
    TRANSFERS,
    decide_share,
    families,
    fit_prior,
    learned_shares,
    restore_transfer,
    transfer_state,
)

from nas.errors import ConfigError
from nas.options import positive

TEXT_VERSION = 2
MODES = ("blocks", "stats", "flat", "flat1", "nodes")


@dataclass(frozen=True)
class OnnxNetOptions:
    """ONNX-Net's options (``--option KEY=VALUE``; the class docstring of
    :class:`OnnxNetPredictor` says what each does)."""

    mode: str = "nodes"
    max_tokens: int = 256
    hidden: int = 128
    ensemble: int = 5
    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-2
    pairs: int = 2048
    numeric: bool = True
    numeric_weight: float = 40.0
    graph_numbers: bool = True
    cache: bool = True
    prior: str = "flops_depth"
    transfer: str = "prior"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"onnxnet mode must be one of {list(MODES)}, got {self.mode!r}")
        if not 16 <= self.max_tokens <= 512:
            raise ConfigError(f"onnxnet max_tokens must be in 16..512, got {self.max_tokens}")
        if self.prior not in PRIORS:
            raise ConfigError(f"onnxnet prior must be one of {sorted(PRIORS)}, got {self.prior!r}")
        if self.transfer not in TRANSFERS:
            raise ConfigError(
                f"onnxnet transfer must be one of {list(TRANSFERS)}, got {self.transfer!r}"
            )
        for k in ("hidden", "ensemble", "pairs", "lr"):
            positive(f"onnxnet option {k}", getattr(self, k))
        for k in ("steps", "weight_decay", "numeric_weight"):
            positive(f"onnxnet option {k}", getattr(self, k), allow_zero=True)


DEFAULTS: dict[str, Any] = dataclasses.asdict(OnnxNetOptions())
NUMBERS = 3  # log10 parameters, multiply-adds, nodes (read from the ONNX graph)


def feature_dim(mode: str) -> int:
    return (3 * DIM if mode in ("blocks", "nodes") else DIM) + NUMBERS


class TextStore:
    """Chunk lists per architecture and embeddings per text, both cached on disk."""

    def __init__(self, mode: str, max_tokens: int, directory: Path | None) -> None:
        self.mode, self.max_tokens = mode, max_tokens
        self.directory = directory
        tag = f"v{TEXT_VERSION}-{mode}-{max_tokens}"
        self.index_path = directory / f"onnxnet-index-{tag}.json" if directory else None
        self.index: dict[str, list[list[Any]]] = {}
        if self.index_path and self.index_path.exists():
            try:
                self.index = json.loads(self.index_path.read_text())
            except (OSError, json.JSONDecodeError):
                self.index = {}
        self.embeddings = EmbeddingCache(
            directory / "onnxnet-embeddings.npz" if directory else None
        )
        self._dirty = False

    @functools.cached_property
    def encoder(self) -> MiniLM:
        return MiniLM.load()

    def _budget(self, text: str) -> int:
        return self.encoder.count_tokens([text])[0] - 2

    def chunks(self, graph) -> list[Chunk]:
        from nas.onnx_export import graph_to_onnx

        proto = graph_to_onnx(graph, fill="none", check=False)
        out = describe_onnx(proto, self._budget, self.max_tokens - 2)
        if self.mode in ("flat", "flat1"):
            flat = describe_flat(proto, self._budget, self.max_tokens - 2)
            # The stats chunk travels for its numbers only (weight 0: not pooled).
            numbers = Chunk("numbers", "", 0.0, out[0].numbers)
            return [numbers, *(flat[:1] if self.mode == "flat1" else flat)]
        return [c for c in out if self.mode == "blocks" or c.kind == "stats"]

    def features(self, graphs: Sequence[GraphLike], flush_every: int = 256) -> np.ndarray:
        """One pooled feature vector per graph."""
        out = np.zeros((len(graphs), feature_dim(self.mode)), np.float32)
        pending: list[tuple[int, list[Chunk] | None, list[list[Any]]]] = []
        for i, g in enumerate(graphs):
            ref = ref_of(g)
            key = f"{ref.space}|{ref.dataset}|{ref.arch}" if ref else None
            entry = self.index.get(key) if key else None
            if entry is not None and not self._embedded(entry):
                entry = None  # its embeddings are gone (another encoder setting): redo it
            if entry is None:
                chunks = self.chunks(as_graph(g))
                entry = [
                    [c.kind, text_key(c.text), c.weight, list(c.numbers)]
                    for c in chunks
                    if c.kind != "numbers"
                ] + [["numbers", "", 0.0, list(c.numbers)] for c in chunks if c.kind == "numbers"]
                if key:
                    self.index[key] = entry
                    self._dirty = True
                pending.append((i, chunks, entry))
            else:
                pending.append((i, None, entry))
            if len(pending) >= flush_every or i == len(graphs) - 1:
                self._resolve(pending, out)
                pending = []
                self.flush()
        return out

    def _embedded(self, entry: list[list[Any]]) -> bool:
        """Whether every text an index entry names has an embedding in the cache."""
        return all(kind == "numbers" or k in self.embeddings.table for kind, k, _, _ in entry)

    def _resolve(self, pending, out: np.ndarray) -> None:
        texts: dict[str, str] = {}
        for _, chunks, _ in pending:
            for c in chunks or ():
                if c.kind != "numbers":
                    texts.setdefault(text_key(c.text), c.text)
        missing = [t for k, t in texts.items() if k not in self.embeddings.table]
        if missing:
            self.embeddings.embed(self.encoder, missing)
        for i, _, entry in pending:
            vecs = {}
            numbers = np.zeros(NUMBERS, np.float32)
            for kind, k, w, nums in entry:
                if nums:
                    numbers = np.asarray(nums, np.float32)
                if kind == "numbers":
                    continue
                if k not in self.embeddings.table:
                    raise ConfigError(
                        "the onnxnet embedding cache lost an entry; delete "
                        f"{self.embeddings.path} and rerun"
                    )
                vecs.setdefault(kind, []).append((w, self.embeddings.table[k]))
            out[i] = np.concatenate([_pool(self.mode, vecs), numbers])

    def flush(self) -> None:
        self.embeddings.flush()
        if self.index_path and self._dirty:
            self.index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.index_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.index, separators=(",", ":")))
            os.replace(tmp, self.index_path)
            self._dirty = False


def _mean(items: list[tuple[float, np.ndarray]]) -> np.ndarray:
    if not items:
        return np.zeros(DIM, np.float32)
    w = np.array([max(x, 1e-6) for x, _ in items], np.float32)
    return (w[:, None] * np.stack([v for _, v in items])).sum(0) / w.sum()


def _pool(mode: str, vecs: dict[str, list[tuple[float, np.ndarray]]]) -> np.ndarray:
    if mode == "blocks":
        return np.concatenate(
            [
                _mean(vecs.get("stats", [])),
                _mean(vecs.get("skeleton", [])),
                _mean(vecs.get("block", [])),
            ]
        )
    if mode == "stats":
        return _mean(vecs.get("stats", []))
    return _mean(vecs.get("flat", []))


class OnnxNetPredictor(Predictor):
    """ONNX graph -> text -> all-MiniLM-L6-v2 (JAX) -> ranking-loss MLP ensemble.

    Options: ``mode`` (nodes | blocks | stats | flat | flat1), ``max_tokens`` (chunk length
    of the chunked modes, at most 512), ``hidden``, ``ensemble`` (number of heads),
    ``steps``, ``lr``, ``weight_decay``, ``pairs`` (pairs per step), ``numeric`` and
    ``numeric_weight`` (append the size numbers),
    ``graph_numbers`` (append the IR graph's global features),
    ``cache`` (use the disk cache), ``prior`` (a compute prior by name, or ``none``) and
    ``transfer`` (``prior``, ``lofo`` or ``full``: the learned part's share on unseen spaces).
    """

    name: ClassVar[str] = "onnxnet"
    Options: ClassVar[type] = OnnxNetOptions
    basis: ClassVar[str] = "prior+learned"
    zero_shot: ClassVar[bool] = True

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed, **options)
        self.opts = self.options
        if self.opts["prior"] == "none":
            self.basis = "learned"
        self.params: dict[str, np.ndarray] | None = None
        self.mu = self.sd = None
        self.calib = (1.0, 0.0)
        self.prior: EffectiveFlops | None = None
        self.families: set[str] = set()
        self.transfer_weight = 1.0

    @functools.cached_property
    def store(self) -> TextStore | NodeTextStore:
        directory = cache_dir() if self.opts["cache"] else None
        if self.opts["mode"] == "nodes":
            return NodeTextStore(directory)
        return TextStore(self.opts["mode"], int(self.opts["max_tokens"]), directory)

    def featurize(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        """The pooled text embeddings of ``graphs`` (cached), then the numbers (if used) and
        the IR graph's global features (with ``graph_numbers``)."""
        feats = self.store.features(list(graphs))
        if not self.opts["numeric"]:
            feats = feats[:, :-NUMBERS]
        if self.opts["graph_numbers"]:
            feats = np.concatenate([feats, global_matrix(graph_features(graphs))], 1)
        return feats

    def _width(self) -> int:
        """The length of :meth:`featurize`'s vectors under the current options."""
        text = feature_dim(self.opts["mode"]) - NUMBERS
        return text + self._numeric_width()

    def _numeric_width(self) -> int:
        """How many trailing feature columns are numbers rather than text embeddings."""
        return NUMBERS * bool(self.opts["numeric"]) + GLOBAL_DIM * bool(self.opts["graph_numbers"])

    def _standardise(self, feats: np.ndarray) -> np.ndarray:
        x = (feats - self.mu) / self.sd
        if k := self._numeric_width():
            # A few numbers among hundreds of text dimensions: give them a louder voice.
            x[:, -k:] *= float(self.opts["numeric_weight"])
        return x.astype(np.float32)

    # ------------------------------------------------------------------ protocol

    def fit(
        self,
        graphs: Sequence[GraphLike],
        y: Sequence[float],
        groups: Sequence[str] | None = None,
    ) -> OnnxNetPredictor:
        y, groups = check_labels(self.name, graphs, y, groups)
        feats = self.featurize(graphs)
        self.mu = feats.mean(0)
        self.sd = feats.std(0) + 1e-4
        x = jnp.asarray(self._standardise(feats))
        o = self.opts
        ir = graph_features(graphs) if o["prior"] != "none" else []
        self.prior = fit_prior(o["prior"], ir, y, groups, self.seed)
        prior = jnp.asarray(self._prior_of(ir, len(y)))
        rng = np.random.default_rng(self.seed)
        by_group: dict[str, np.ndarray] = {}
        for gname in dict.fromkeys(groups):
            by_group[gname] = np.array([k for k, gg in enumerate(groups) if gg == gname])
        usable = {g: idx for g, idx in by_group.items() if len(idx) > 1}
        if not usable:
            raise ConfigError("fit needs at least two graphs of one group to rank")
        k = int(o["ensemble"])
        params = init_heads(jax.random.PRNGKey(self.seed), k, x.shape[1], int(o["hidden"]))
        opt = optax.adamw(float(o["lr"]), weight_decay=float(o["weight_decay"]))
        state = opt.init(params)
        names = list(usable)
        share = np.array([len(usable[g]) for g in names], float)
        share /= share.sum()
        n_pairs = int(o["pairs"])
        for _ in range(int(o["steps"])):
            # Pairs within a group, sampled in proportion to group size; each head its own.
            gi = rng.choice(len(names), size=(k, n_pairs), p=share)
            a = np.zeros((k, n_pairs), np.int32)
            b = np.zeros((k, n_pairs), np.int32)
            for t, gname in enumerate(names):
                m = gi == t
                idx = usable[gname]
                a[m] = idx[rng.integers(len(idx), size=int(m.sum()))]
                b[m] = idx[rng.integers(len(idx), size=int(m.sum()))]
            better = y[a] >= y[b]
            i = np.where(better, a, b)
            j = np.where(better, b, a)
            w = (y[i] != y[j]).astype(np.float32)
            params, state, _ = step(
                params, state, x, prior, jnp.asarray(i), jnp.asarray(j), jnp.asarray(w), opt
            )
        self.params = {kk: np.asarray(v) for kk, v in params.items()}
        self.__dict__.pop("_device_params", None)
        s = np.asarray(scores(params, x, prior)).mean(0)
        # Scores -> accuracy-like numbers: least squares on the training data.
        slope, icpt = np.polyfit(s, y, 1) if np.std(s) > 0 else (0.0, float(y.mean()))
        if slope <= 0:
            slope, icpt = float(np.std(y) / (np.std(s) + 1e-9)), float(y.mean() - s.mean())
        self.calib = (float(slope), float(icpt))
        self.ood_detector.fit(feats, seed=self.seed)
        self.fitted = True
        fams = families(graphs)
        self.families = set(fams)

        def parts(train: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sub = OnnxNetPredictor(self.seed, **{**o, "transfer": "full"})
            sub.fit([graphs[i] for i in train], y[train], [groups[i] for i in train])
            return sub._parts([graphs[i] for i in held])

        self.transfer_weight = decide_share(
            o["transfer"], self.prior is not None, fams, y, parts, self.seed
        )
        return self

    def _prior_of(self, ir: Sequence, n: int) -> np.ndarray:
        """The compute prior per graph (zeros without one); the prior scores each graph the
        same whatever graphs share its batch."""
        if self.prior is None or not n:
            return np.zeros(n, np.float32)
        return np.asarray(self.prior(ir), np.float32)

    def _heads(self, graphs: Sequence[GraphLike]) -> tuple[np.ndarray, np.ndarray]:
        """``(heads, n)`` scaled priors and learned parts."""
        x = self._standardise(self.featurize(graphs))
        ir = graph_features(graphs) if self.prior is not None else []
        prior = self._prior_of(ir, len(graphs)).astype(np.float64)
        a = np.asarray(self.params.get("a", np.zeros(len(self.params["b2"]))), np.float64)
        learned = learned_rows(self._device_params, x).astype(np.float64)
        return a[:, None] * prior[None], learned

    @functools.cached_property
    def _device_params(self) -> dict[str, jax.Array]:
        """The heads' parameters as JAX arrays (converted once per fit or load)."""
        return {k: jnp.asarray(v) for k, v in self.params.items()}

    def _parts(self, graphs: Sequence[GraphLike]) -> tuple[np.ndarray, np.ndarray]:
        """The (head-averaged) scaled prior and learned part per graph."""
        prior, learned = self._heads(graphs)
        return prior.mean(0), learned.mean(0)

    def decompose(self, graphs: Sequence[GraphLike]) -> Decomposition | None:
        """The (head-averaged) scaled prior and learned part per graph; ``None`` with
        ``prior="none"``."""
        self._require_fitted()
        if self.prior is None:
            return None
        prior, learned = self._parts(graphs)
        share = learned_shares(graphs, self.families, self.transfer_weight)
        return Decomposition(prior, learned, share)

    def predict(self, graphs: Sequence[GraphLike]) -> tuple[np.ndarray, np.ndarray]:
        self._require_fitted()
        if not len(graphs):
            return np.zeros(0), np.zeros(0)
        prior, learned = self._heads(graphs)
        share = learned_shares(graphs, self.families, self.transfer_weight)
        s = prior + share[None] * learned  # (k, n)
        a, b = self.calib
        # The heads' spread with the whole learned part: a smaller share never makes a
        # network from an unseen space look more certain.
        return a * s.mean(0) + b, a * (prior + learned).std(0)

    def _ood_features(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        return self.featurize(graphs)

    # ------------------------------------------------------------------ persistence

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"head.{k}": np.asarray(v, np.float32) for k, v in self.params.items()}
        arrays["norm.mu"] = np.asarray(self.mu, np.float32)
        arrays["norm.sd"] = np.asarray(self.sd, np.float32)
        meta, extra = transfer_state(self.prior, self.families, self.transfer_weight)
        meta.update(
            calib=list(self.calib),
            text_version=TEXT_VERSION,
            lines_version=LINES_VERSION,
            graph_numbers=bool(self.opts["graph_numbers"]),
        )
        return meta, {**arrays, **extra}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        if meta.get("text_version") != TEXT_VERSION:
            raise ConfigError(
                f"this onnxnet predictor was saved with text version {meta.get('text_version')}; "
                f"this build writes version {TEXT_VERSION}: refit it"
            )
        if self.opts["mode"] == "nodes" and meta.get("lines_version") != LINES_VERSION:
            raise ConfigError(
                f"this onnxnet predictor was saved with node lines version "
                f"{meta.get('lines_version')}; this build writes version {LINES_VERSION}: refit it"
            )
        self.params = {k[5:]: v for k, v in arrays.items() if k.startswith("head.")}
        self.__dict__.pop("_device_params", None)
        self.mu, self.sd = arrays["norm.mu"], arrays["norm.sd"]
        if self.opts["graph_numbers"] and "graph_numbers" not in meta:
            # Saved before the option existed: that predictor was trained without them.
            self.opts["graph_numbers"] = False
        if len(self.mu) != self._width():
            raise ConfigError(
                f"this onnxnet predictor's {len(self.mu)} features do not match its options "
                f"({self._width()}); refit it"
            )
        self.calib = tuple(meta["calib"])
        self.prior, self.families, self.transfer_weight = restore_transfer(meta, arrays)
