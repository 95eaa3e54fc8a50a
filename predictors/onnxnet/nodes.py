"""ONNX-Net's ``nodes`` text: one short line per graph node, embedded once per distinct line.

The ``blocks`` text describes a whole cell in one chunk, so every new NB201 cell is a new
text for the sentence encoder (about 113 ms of MiniLM per cell). Here a network is a bag
of node lines instead: each IR node becomes one line in the words of the ONNX op it
exports to, with its non-default attributes, its output shape (C x H x W) and the ops
that feed it, for example ``Conv k3 p1 s2 out 32x16x16 in Relu``. A search space has few
distinct lines (NB201: 143 over all its 15,625 cells), so a fresh cell is a new
*combination* of lines whose embeddings are already cached by content, and its features
cost a look-up and three weighted sums:

* the mean of the node embeddings (which ops, where, fed by what);
* the mean over edges of the product of the two end nodes' embeddings (which lines are
  connected: the structure the mean cannot see);
* the mean weighted by each node's depth (longest path from the input, as a share of the
  network's): early against late ops.

Every sum runs over the network's own nodes and edges in graph order, in float64, so the
features of a graph do not depend on the other graphs of its batch or on what the cache
held before. The lines come from the IR graph (or its light stand-in,
:mod:`nas.predictors.lite`, for benchmark cells), not from an exported ONNX model: export
and shape inference cost more than the rest of the prediction.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from nas.predictors.features import ArchRef, GraphLike, as_graph
from nas.predictors.onnxnet.encoder import DIM, EmbeddingCache, MiniLM

from nas.ops import OPS, REQUIRED

ONNX_OPS = {
    "input": "Input",
    "output": "Output",
    "identity": "Identity",
    "dropout": "Dropout",
    "add": "Add",
    "mul": "Mul",
    "concat": "Concat",
    "split": "Slice",
    "flatten": "Flatten",
    "zero": "Zero",
    "relu": "Relu",
    "relu6": "Clip",
    "sigmoid": "Sigmoid",
    "hsigmoid": "HardSigmoid",
    "hswish": "HardSwish",
    "swish": "Swish",
    "tanh": "Tanh",
    "gelu": "Gelu",
    "dense": "Gemm",
    "batch_norm": "BatchNormalization",
    "conv": "Conv",
    "pad": "Pad",
    "max_pool": "MaxPool",
    "avg_pool": "AveragePool",
    "global_pool": "GlobalAveragePool",
    "layer_norm": "LayerNormalization",
    "rms_norm": "RMSNorm",
    "attention": "Attention",
    "embed": "Embedding",
}
"""The ONNX op (or, for IR ops ONNX writes as several nodes, the one-line name the
``blocks`` text uses) each IR op reads as; other ops read as their IR name."""
SHORT = {"kernel": "k", "stride": "s", "padding": "p", "dilation": "d", "groups": "g"}
SILENT = {"out_channels", "out_features", "shape", "dtype", "eps", "momentum", "embedding"}
"""Attributes a line leaves out: the output shape says them, or they do not shape the net."""
NUMBERS = 3
LINES_VERSION = 1
"""Bumped whenever :func:`node_lines` or :func:`pool` changes what a network's features are
(a predictor saved with another version is refused, not misread)."""
COMMUTATIVE = {"add", "mul"}
"""Ops whose feeding ops a line lists sorted (their order says nothing)."""


def _words(op: str, attrs: dict[str, Any], in_channels: int | None) -> str:
    """The op's name and its non-default attributes, in key order, e.g. ``Conv dw k3 p1 s2``."""
    defaults = OPS[op].defaults if op in OPS else {}
    words = [ONNX_OPS.get(op, op)]
    for k in sorted(attrs):
        v = attrs[k]
        if k in SILENT or (k in defaults and defaults[k] is not REQUIRED and defaults[k] == v):
            continue
        if k == "groups" and in_channels is not None and v == in_channels and v > 1:
            words.append("dw")
        elif isinstance(v, bool):
            words.append(k.replace("_", " ") if v else "no " + k.replace("_", " "))
        elif k in SHORT:
            words.append(f"{SHORT[k]}{_value(v)}")
        else:
            words.append(f"{k.replace('_', ' ')} {_value(v)}")
    return " ".join(words)


def _value(v: Any) -> str:
    """An attribute value as ONNX-Net text: ``1`` for ``[1, 1, 1, 1]``, ``1x2`` for ``[1, 2]``."""
    if isinstance(v, list | tuple):
        items = [str(x) for x in v]
        return items[0] if len(set(items)) == 1 else "x".join(items)
    return str(v)


def _shape(s: Sequence[int]) -> str:
    """An output shape as ONNX writes it: ``C x H x W`` for feature maps."""
    s = tuple(s)
    if len(s) == 3:
        s = (s[2], s[0], s[1])
    return "x".join(str(x) for x in s) if s else "scalar"


def node_lines(graph: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Per node (in topological order) its line, and the edges as (sender, receiver)
    positions in that order.

    Args:
        graph: an :class:`~nas.graph.ArchGraph` or :class:`~nas.predictors.lite.LiteGraph`
            (both give the same lines).
    """
    order = graph.topological()
    pos = {n: i for i, n in enumerate(order)}
    words: list[str] = []
    lines: list[str] = []
    senders: list[int] = []
    receivers: list[int] = []
    for n in order:
        op, ins = graph.op(n), graph.inputs(n)
        in_shape = graph.shape(ins[0]) if ins else ()
        w = _words(op, graph.attrs(n), in_shape[-1] if len(in_shape) == 3 else None)
        words.append(w)
        feed_ops = [words[pos[i]].split(" ", 1)[0] for i in ins]
        feed = " ".join(sorted(feed_ops) if op in COMMUTATIVE else feed_ops)
        lines.append(f"{w} out {_shape(graph.shape(n))}" + (f" in {feed}" if feed else ""))
        senders.extend(pos[i] for i in ins)
        receivers.extend([pos[n]] * len(ins))
    return lines, np.asarray(senders, np.int64), np.asarray(receivers, np.int64)


def depth_share(n: int, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """Each node's longest path from a source, divided by the longest in the graph (nodes
    in topological order, so one pass over edges sorted by receiver suffices)."""
    depth = np.zeros(n, np.float64)
    for s, r in sorted(zip(senders.tolist(), receivers.tolist(), strict=True), key=_by_recv):
        if depth[s] + 1 > depth[r]:
            depth[r] = depth[s] + 1
    return depth / max(depth.max(), 1.0)


def _by_recv(e: tuple[int, int]) -> int:
    return e[1]


def pool(vecs: np.ndarray, senders: np.ndarray, receivers: np.ndarray) -> np.ndarray:
    """``3 * DIM`` features of one graph from its node embeddings ``(n, DIM)`` (module doc)."""
    v = vecs.astype(np.float64)
    mean = v.mean(0)
    if len(senders):
        pairs = (v[senders] * v[receivers]).mean(0)
    else:
        pairs = np.zeros(DIM)
    d = depth_share(len(v), senders, receivers)
    deep = (d[:, None] * v).sum(0) / max(d.sum(), 1e-9)
    return np.concatenate([mean, pairs, deep]).astype(np.float32)


def _graph(g: GraphLike) -> Any:
    """The graph to read lines from: a benchmark cell's light graph where the space has
    one (the same lines, several times faster), else the IR graph."""
    if isinstance(g, ArchRef):
        from nas.predictors.lite import lite_graph

        lite = lite_graph(g.space, g.arch, g.dataset)
        if lite is not None:
            return lite
    return as_graph(g)


class NodeTextStore:
    """Line embeddings by content (on disk with the other ONNX-Net texts) and pooled
    features per graph; the ``nodes`` counterpart of :class:`~nas.predictors.onnxnet.TextStore`.
    """

    def __init__(self, directory: Path | None) -> None:
        self.embeddings = EmbeddingCache(
            directory / "onnxnet-embeddings.npz" if directory else None
        )
        self.vectors: dict[str, np.ndarray] = {}  # line -> embedding (memory only)

    @functools.cached_property
    def encoder(self) -> MiniLM:
        return MiniLM.load()

    def features(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        """One ``3 * DIM + 3`` vector per graph: pooled line embeddings, then log10 of the
        parameters, multiply-adds and node count."""
        out = np.zeros((len(graphs), 3 * DIM + NUMBERS), np.float32)
        described = []
        for g in graphs:
            graph = _graph(g)
            lines, snd, rcv = node_lines(graph)
            described.append((lines, snd, rcv, _numbers(graph, len(lines))))
        new = list(dict.fromkeys(x for d in described for x in d[0] if x not in self.vectors))
        if new:
            for line, vec in zip(new, self.embeddings.embed(self.encoder, new), strict=True):
                self.vectors[line] = vec
            self.embeddings.flush()
        for i, (lines, snd, rcv, numbers) in enumerate(described):
            vecs = np.stack([self.vectors[x] for x in lines])
            out[i] = np.concatenate([pool(vecs, snd, rcv), numbers])
        return out

    def flush(self) -> None:
        self.embeddings.flush()


def _numbers(graph: Any, n: int) -> np.ndarray:
    """log10 of parameters, multiply-adds and nodes (as the ``blocks`` stats numbers)."""
    vals = (graph.params(), graph.flops(), n)
    return np.array([round(float(np.log10(max(v, 1))), 6) for v in vals], np.float32)
