"""Graph features of the IR for predictors: a compact computation graph per network.

:func:`graph_features` reduces an :class:`~nas.graph.ArchGraph` to the computation that
matters and describes it with fixed-width numeric features:

1. *Liveness*: values that are identically zero (``zero`` ops and everything that maps zero
   to zero from them) and nodes that do not reach the output are dropped.
2. *Pass-through*: ``identity``, ``dropout``, ``output`` and single-input ``add``/``concat``
   forward their input.
3. *Fusion*: a ``batch_norm`` or activation becomes a flag of its neighbouring conv, dense,
   pooling or merge node (post-op when it is that node's only consumer, pre-op when it feeds
   only that node), the way deployed graphs fuse them.

What remains keeps every conv, dense, pooling and merge node with its kernel, stride,
groups, channels, resolution, share of the network's FLOPs and parameters and its depth. A
set of graph-level features (log parameters, log FLOPs, conv depth of the longest and the
shortest input-output path, the longest path in spatial (larger than 1x1) convs, ...)
travels beside it.

Built features are cached on disk (``$NAS_CACHE_DIR`` or ``~/.cache/nas``), keyed by space,
architecture, dataset and :data:`FEATURE_VERSION`, because expanding an architecture into
its IR costs 5-20 ms and a benchmark table holds thousands of them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, DataError
from nas.graph import ArchGraph
from nas.ops import OPS, OpDef, pair

FEATURE_VERSION = 7
"""Bump when :func:`graph_features` changes: it keys the on-disk cache."""

CATEGORIES = (
    "input",
    "conv",
    "conv_1x1",
    "conv_dw",
    "conv_group",
    "dense",
    "max_pool",
    "avg_pool",
    "global_pool",
    "add",
    "mul",
    "concat",
    "batch_norm",
    "act",
    "gate",
    "embed",
    "layer_norm",
    "attention",
    "other",
)
_CAT = {c: i for i, c in enumerate(CATEGORIES)}
# Which ops fuse into their neighbours, keep zeros, forward their input, and the predictor
# category of each: all from the op definitions (nas.ops), never a list kept here.


def _spec(graph: ArchGraph, n: int) -> OpDef:
    return OPS[graph.op(n)]


NUMERIC = (
    "kernel",
    "stride2",
    "dilated",
    "pre_act",
    "pre_bn",
    "post_bn",
    "post_act",
    "post_gate",
    "log_cin",
    "log_cout",
    "log_res",
    "flops_share",
    "params_share",
    "in_degree",
    "out_degree",
    "position",
    "conv_depth",
    "conv_height",
    "repeat",
)
NODE_DIM = len(CATEGORIES) + len(NUMERIC)

GLOBALS = (
    "log_params",
    "log_flops",
    "log_nodes",
    "log_convs",
    "longest_conv_path",
    "shortest_conv_path",
    "log_input_res",
    "log_classes",
    "mean_log_channels",
    "share_1x1",
    "share_dw",
    "share_pool",
    "spatial_depth",
)
GLOBAL_DIM = len(GLOBALS)
SPATIAL_DEPTH_SCALE = 6.0
"""``spatial_depth`` is ``log2(1 + longest path in spatial convs) / SPATIAL_DEPTH_SCALE``."""


@dataclass(frozen=True)
class GraphFeatures:
    """The compact computation graph of one network.

    Attributes:
        nodes: ``(n, NODE_DIM)`` float32 node features.
        senders: ``(e,)`` int32 edge sources.
        receivers: ``(e,)`` int32 edge targets.
        globals: ``(GLOBAL_DIM,)`` float32 graph-level features.
    """

    nodes: np.ndarray
    senders: np.ndarray
    receivers: np.ndarray
    globals: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.nodes.shape[0])


@dataclass(frozen=True)
class ArchRef:
    """A labelled-data architecture that is expanded into its IR only when needed."""

    space: str
    arch: str
    dataset: str

    @property
    def meta(self) -> dict[str, str]:
        return {"space": self.space, "arch": self.arch, "dataset": self.dataset}

    def graph(self) -> ArchGraph:
        from nas.search_spaces import get_space

        space = get_space(self.space)
        return space.to_graph(space.parse(self.arch), self.dataset)


GraphLike = ArchGraph | ArchRef


def _check_graph(g: object) -> None:
    if not isinstance(g, ArchGraph | ArchRef):
        raise ConfigError(
            "predictors take architecture graphs (nas.graph.ArchGraph, or ArchRef), got "
            f"{type(g).__name__}"
        )


def as_graph(g: GraphLike) -> ArchGraph:
    _check_graph(g)
    return g.graph() if isinstance(g, ArchRef) else g


def ref_of(g: GraphLike) -> ArchRef | None:
    """The (space, arch, dataset) reference of a graph built by a space, if known."""
    if isinstance(g, ArchRef):
        return g
    _check_graph(g)
    m = g.meta
    if all(isinstance(m.get(k), str) for k in ("space", "arch", "dataset")):
        return ArchRef(m["space"], m["arch"], m["dataset"])
    return None


# --------------------------------------------------------------------------------------
# Building features
# --------------------------------------------------------------------------------------


def _log2(x: float) -> float:
    return math.log2(max(float(x), 1.0))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What :func:`graph_features` needs of one node that its op, attributes and input
    shapes decide alone, so that a graph of repeated nodes (a
    :class:`~nas.predictors.lite.LiteGraph`) computes it once per distinct node.

    Attributes:
        zero: the op is ``zero``. zero_if_any, keeps_zero: its zero propagation.
        forwards: with a single live input it forwards it (pass-through ops, ``add``,
            ``concat``).
        fuse: its fusion role (``act``, ``gate``, ``bn`` or ``""``).
        host: a following norm or activation may fuse into it (never the input).
        conv_or_dense: a preceding norm or activation may fuse into it.
        cat: its category index. conv: a conv or dense node. spatial: it widens the
            receptive field.
        counts: it gets FLOPs and parameter shares. macs, params: its costs.
        row: the features that depend on nothing else (category, kernel, stride,
            dilation, channels, resolution), then ``macs`` and ``params`` where they count
            (else 0), ``conv``, ``spatial`` and ``cat`` (float64; see ``_EXTRA``).
    """

    zero: bool
    zero_if_any: bool
    keeps_zero: bool
    forwards: bool
    fuse: str
    host: bool
    conv_or_dense: bool
    cat: int
    conv: bool
    spatial: bool
    counts: bool
    macs: int
    params: int
    row: np.ndarray


def node_info(graph: ArchGraph, n: int) -> NodeInfo:
    """The :class:`NodeInfo` of node ``n`` of a finalized graph."""
    spec, op, a = _spec(graph, n), graph.op(n), graph.attrs(n)
    node = graph.node(n)
    cat = spec.category(node)
    cat = cat if cat in _CAT else "other"
    row = np.zeros(NODE_DIM)
    row[_CAT[cat]] = 1.0
    out = graph.shape(n)
    ins = graph.inputs(n)
    in_shape = graph.shape(ins[0]) if ins else out
    if "kernel" in a:
        kh, kw = pair(a["kernel"], "kernel", n)
        row[_COL["kernel"]] = (kh + kw) / 14.0
    if "stride" in a and max(pair(a["stride"], "stride", n)) > 1:
        row[_COL["stride2"]] = 1.0
    if "dilation" in a and max(pair(a["dilation"], "dilation", n)) > 1:
        row[_COL["dilated"]] = 1.0
    row[_COL["log_cin"]] = _log2(in_shape[-1]) / 10.0
    row[_COL["log_cout"]] = _log2(out[-1]) / 10.0
    row[_COL["log_res"]] = _log2(in_shape[0] if len(in_shape) == 3 else 1) / 8.0
    macs = graph.node_macs(n)
    counts = bool(macs) or (spec.parametric and spec.fuse != "bn")  # not the norms
    conv = cat.startswith("conv") or cat == "dense"
    # A spatial conv has a kernel larger than 1x1 (depthwise ones included) and attention
    # mixes tokens: they widen the receptive field, which a 1x1 conv, a dense layer or a
    # stride-2 1x1 shortcut does not.
    spatial = (cat.startswith("conv") or cat == "attention") and spec.mixes(node)
    params = graph.node_params(n)
    extra = (macs if counts else 0, params if counts else 0, conv, spatial, _CAT[cat])
    return NodeInfo(
        zero=spec.name == "zero",
        zero_if_any=spec.zero_if_any,
        keeps_zero=spec.zero_preserving(a),
        forwards=spec.passthrough or op in ("add", "concat"),
        fuse=spec.fuse,
        host=spec.host and op != "input",
        conv_or_dense=op in ("conv", "dense"),
        cat=_CAT[cat],
        conv=conv,
        spatial=spatial,
        counts=counts,
        macs=macs,
        params=params,
        row=np.concatenate([row, np.array(extra, float)]),
    )


def _zero_and_live(infos: Sequence[NodeInfo], ins: Sequence[Sequence[int]], output: int):
    """Which nodes are identically zero, and which live ones reach the output."""
    zero = [False] * len(infos)
    at = zero.__getitem__
    for n, f in enumerate(infos):
        i = ins[n]
        if f.zero:
            zero[n] = True
        elif i and (f.zero_if_any or f.keeps_zero):
            zero[n] = (f.zero_if_any and any(map(at, i))) or (f.keeps_zero and all(map(at, i)))
    live = [False] * len(infos)
    stack = [output]
    while stack:
        n = stack.pop()
        if live[n] or zero[n]:
            continue
        live[n] = True
        stack.extend(ins[n])
    return live


def _reduce(
    infos: Sequence[NodeInfo], ins: Sequence[Sequence[int]], output: int
) -> tuple[list[int], list[list[int]], list[dict]]:
    """Live, contracted, fused graph: (node order, inputs per node, fused flags per node;
    both lists indexed by node). Nodes are numbered in topological order; ``ins`` are their
    inputs."""
    live = _zero_and_live(infos, ins, output)
    n_all = len(infos)
    # Pass-through contraction.
    alias = list(range(n_all))
    inputs: list[list[int]] = [[] for _ in range(n_all)]
    kept: list[int] = []
    for n, f in enumerate(infos):
        if not live[n]:
            continue
        i = [alias[j] for j in ins[n] if live[j]]
        if len(i) == 1 and f.forwards:
            alias[n] = i[0]
            continue
        inputs[n] = i
        kept.append(n)
    # Fusion of batch norms and activations into neighbours.
    consumers: list[list[int]] = [[] for _ in range(n_all)]
    for n in kept:
        for i in inputs[n]:
            consumers[i].append(n)
    flags: list[dict] = [{} for _ in range(n_all)]
    merged = list(range(n_all))  # merged[n] != n: n became a flag of merged[n]
    for n in kept:
        i = [merged[j] for j in inputs[n]]
        inputs[n] = i
        kind = infos[n].fuse
        if not kind or len(i) != 1:
            continue
        p = i[0]
        post = "post_" + kind
        if infos[p].host and len(consumers[p]) == 1 and post not in flags[p]:
            flags[p][post] = 1.0
            merged[n] = p
            consumers[p] = consumers[n]
            continue
        cons = consumers[n]
        pre = "pre_" + kind
        if (
            kind != "gate"
            and len(cons) == 1
            and infos[cons[0]].conv_or_dense
            and len(ins[cons[0]]) == 1
            and pre not in flags[cons[0]]
        ):
            flags[cons[0]][pre] = 1.0
            merged[n] = p
            consumers[p] = [c if c != n else cons[0] for c in consumers[p]]
    final = [n for n in kept if merged[n] == n]
    for n in final:
        # a chain of merges: follow until a kept node
        fixed = []
        for i in inputs[n]:
            while merged[i] != i:
                i = merged[i]
            fixed.append(i)
        inputs[n] = fixed
    return final, inputs, flags


def _nodes(graph: ArchGraph) -> tuple[list[NodeInfo], list[list[int]], int, int]:
    """``(infos, inputs, output, input)`` in topological positions. A graph that keeps
    its nodes' infos (``node_infos``, a LiteGraph: once per distinct node) gives them."""
    own = getattr(graph, "node_infos", None)
    if own is not None:
        infos, ins = own()
        return infos, ins, graph.output, graph.input
    order = graph.topological()
    pos = {n: k for k, n in enumerate(order)}
    ins = [[pos[i] for i in graph.inputs(n)] for n in order]
    return [node_info(graph, n) for n in order], ins, pos[graph.output], pos[graph.input]


_COL = {name: len(CATEGORIES) + i for i, name in enumerate(NUMERIC)}
_EXTRA = ("macs", "params", "conv", "spatial", "cat")
"""What :attr:`NodeInfo.row` holds after the static features."""
_FLAG_COLS = {f: _COL[f] for f in ("pre_act", "pre_bn", "post_bn", "post_act", "post_gate")}


def graph_features(graph: ArchGraph) -> GraphFeatures:
    """The compact computation graph of a finalized :class:`ArchGraph` (see module doc)."""
    infos, ins, output, inp = _nodes(graph)
    order, inputs, flags = _reduce(infos, ins, output)
    index = {n: i for i, n in enumerate(order)}
    total_macs = max(graph.flops(), 1)
    total_params = max(graph.params(), 1)
    senders, receivers = [], []
    preds = [[index[i] for i in inputs[n]] for n in order]
    for k, p in enumerate(preds):
        senders += p
        receivers += [k] * len(p)
    n_nodes = len(order)
    info = [infos[n] for n in order]
    table = np.array([f.row for f in info]).reshape(n_nodes, NODE_DIM + len(_EXTRA))
    feats = table[:, :NODE_DIM]
    macs, params, is_conv, is_spatial, cat = (table[:, NODE_DIM + i] for i in range(5))
    outdeg = np.bincount(np.asarray(senders, int), minlength=n_nodes).astype(float)
    indeg = np.bincount(np.asarray(receivers, int), minlength=n_nodes).astype(float)
    depth, short, spatial, height = _depths(is_conv, is_spatial, preds)
    longest = max(float(depth.max()), 1.0)
    for k, n in enumerate(order):
        for f, v in flags[n].items():
            feats[k, _FLAG_COLS[f]] = v
    feats[:, _COL["flops_share"]] = macs / total_macs * 10.0
    feats[:, _COL["params_share"]] = params / total_params * 10.0
    feats[:, _COL["in_degree"]] = np.minimum(indeg, 8) / 4.0
    feats[:, _COL["out_degree"]] = np.minimum(outdeg, 8) / 4.0
    feats[:, _COL["position"]] = np.arange(n_nodes) / max(n_nodes - 1, 1)
    feats[:, _COL["conv_depth"]] = depth / longest
    feats[:, _COL["conv_height"]] = height / longest
    feats = feats.astype(np.float32)
    n_conv = float(is_conv.sum())
    in_shape = graph.shape(graph.input)
    out_shape = graph.shape(graph.output)
    chans = feats[is_conv > 0, _COL["log_cout"]]
    cats = np.bincount(cat.astype(int), minlength=len(CATEGORIES))
    g = np.array(
        [
            math.log10(total_params) / 7.0,
            math.log10(total_macs) / 9.0,
            _log2(n_nodes) / 10.0,
            _log2(n_conv + 1) / 8.0,
            float(depth.max()) / 50.0,
            float(short[-1] if np.isfinite(short[-1]) else 0.0) / 50.0,
            _log2(in_shape[0] if len(in_shape) == 3 else 1) / 8.0,
            _log2(out_shape[-1]) / 10.0,
            float(np.mean(chans)) if len(chans) else 0.0,
            int(cats[_CAT["conv_1x1"]]) / max(n_conv, 1.0),
            int(cats[_CAT["conv_dw"]]) / max(n_conv, 1.0),
            int(cats[_CAT["max_pool"]] + cats[_CAT["avg_pool"]]) / max(n_nodes, 1),
            _log2(float(spatial.max()) + 1.0) / SPATIAL_DEPTH_SCALE,
        ],
        np.float32,
    )
    feats, senders, receivers = _collapse_repeats(feats, senders, receivers, _COL["repeat"])
    return GraphFeatures(
        feats,
        np.asarray(senders, np.int32),
        np.asarray(receivers, np.int32),
        g,
    )


def _depths(is_conv: np.ndarray, is_spatial: np.ndarray, preds: list[list[int]]):
    """Conv depth: the longest and shortest path (in convs) from the input; the longest
    path in spatial convs; the conv height (longest path in convs to the output)."""
    n_nodes = len(preds)
    conv, spat = is_conv.tolist(), is_spatial.tolist()
    depth = [0.0] * n_nodes
    short = [math.inf] * n_nodes
    spatial = [0.0] * n_nodes
    succ: list[list[int]] = [[] for _ in range(n_nodes)]
    for k, ins in enumerate(preds):
        c = conv[k]
        if ins:
            depth[k] = max([depth[i] for i in ins]) + c
            short[k] = min([short[i] for i in ins]) + c
            spatial[k] = max([spatial[i] for i in ins]) + spat[k]
            for i in ins:
                succ[i].append(k)
        else:
            depth[k], short[k], spatial[k] = c, c, spat[k]
    height = [0.0] * n_nodes
    for k in range(n_nodes - 1, -1, -1):
        after = succ[k]
        height[k] = conv[k] + (max([height[j] for j in after]) if after else 0.0)
    return tuple(np.array(v) for v in (depth, short, spatial, height))


# Columns that legitimately differ between copies of a repeated block.
_POSITIONAL = ("position", "conv_depth", "conv_height")


def _collapse_repeats(
    feats: np.ndarray, senders: list[int], receivers: list[int], repeat_col: int
) -> tuple[np.ndarray, list[int], list[int]]:
    """Keep one copy of consecutive identical blocks (cells, modules) with a repeat count.

    Nodes are in topological order. A node that no edge jumps over is a cut vertex (every
    path passes through it); the nodes after one cut vertex up to and including the next form
    a block. Runs of blocks with equal features (positions aside) and equal internal wiring
    are collapsed to their first block, whose nodes get ``repeat = log2(run length) / 3``.
    Message passing then costs a fraction (NB201: 5 cells per stage become 1).
    """
    n = len(feats)
    if n < 4:
        return feats, senders, receivers
    snd, rcv = np.asarray(senders, int), np.asarray(receivers, int)
    lo_end, hi_end = np.minimum(snd, rcv), np.maximum(snd, rcv)
    jump = hi_end - lo_end > 1
    crossed = np.bincount(lo_end[jump] + 1, minlength=n + 1)[: n + 1]
    crossed = crossed - np.bincount(hi_end[jump], minlength=n + 1)[: n + 1]
    cuts = np.flatnonzero(np.cumsum(crossed)[:n] == 0).tolist()
    blocks = [(cuts[i] + 1, cuts[i + 1]) for i in range(len(cuts) - 1)]  # inclusive ranges
    mask_cols = [NUMERIC.index(c) + len(CATEGORIES) for c in _POSITIONAL]
    out_degree_col = NUMERIC.index("out_degree") + len(CATEGORIES)
    masked = feats.copy()
    masked[:, mask_cols] = 0.0
    half = masked.astype(np.float16)
    masked[:, out_degree_col] = 0.0  # a block's last node: its copies feed different nodes
    half_last = masked.astype(np.float16)
    # Edges sorted by (target, source): a block's incoming edges are one slice.
    by_target = np.lexsort((snd, rcv))
    edges = np.stack([rcv[by_target], snd[by_target]], 1)
    starts = np.searchsorted(edges[:, 0], np.arange(n + 1)).tolist()

    def signature(lo: int, hi: int) -> tuple:
        wiring = (edges[starts[lo] : starts[hi + 1]] - lo).tobytes()
        return (hi - lo, half[lo:hi].tobytes() + half_last[hi].tobytes(), wiring)

    drop = np.zeros(n, bool)
    remap = np.arange(n)
    repeat = np.zeros(n)
    sigs = [signature(lo, hi) for lo, hi in blocks]
    i = 0
    while i < len(blocks):
        best_p, best_run = 1, 1
        for p in range(1, 5):  # a unit of p consecutive blocks (a cell may hold several)
            run = 1
            while i + (run + 1) * p <= len(blocks) and all(
                sigs[i + run * p + q] == sigs[i + q] for q in range(p)
            ):
                run += 1
            if run > 1 and (run - 1) * p > (best_run - 1) * best_p:
                best_p, best_run = p, run
        if best_run > 1:
            lo, hi = blocks[i][0], blocks[i + best_p - 1][1]
            repeat[lo : hi + 1] = math.log2(best_run) / 3.0
            last = blocks[i + best_run * best_p - 1][1]
            drop[hi + 1 : last + 1] = True
            remap[last] = hi  # consumers of the run's end read the first unit's end
            i += best_run * best_p
        else:
            i += 1
    if not drop.any():
        return feats, senders, receivers
    keep = np.flatnonzero(~drop)
    new_index = np.full(n, -1)
    new_index[keep] = np.arange(len(keep))
    out = feats[keep].copy()
    out[:, repeat_col] = repeat[keep]
    alive = ~drop[rcv]
    return out, new_index[remap[snd[alive]]].tolist(), new_index[rcv[alive]].tolist()


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$NAS_CACHE_DIR`` or ``~/.cache/nas``."""
    env = os.environ.get("NAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "nas"


def _code_key() -> str:
    return f"v{FEATURE_VERSION}-d{NODE_DIM}-g{GLOBAL_DIM}"


class FeatureStore:
    """Features of many architectures, in memory and on disk per (space, dataset).

    On disk a table is one main file plus small shards: a flush writes only the entries
    added since the last one (a search that keeps scoring fresh candidates would otherwise
    rewrite the whole table, tens of megabytes for NB201, after every call), and a reader
    that finds more than :attr:`MAX_SHARDS` shards merges them into the main file.

    Args:
        directory: cache folder (default :func:`cache_dir`); ``None``-like ``False`` turns the
            disk cache off.
    """

    MAX_SHARDS = 16

    def __init__(self, directory: Path | str | None | bool = None) -> None:
        self.directory = None if directory is False else Path(directory or cache_dir())
        self._mem: dict[tuple[str, str], dict[str, GraphFeatures]] = {}
        self._new: dict[tuple[str, str], list[str]] = {}

    def _file(self, space: str, dataset: str) -> Path:
        assert self.directory is not None
        safe = hashlib.sha1(f"{space}|{dataset}".encode()).hexdigest()[:10]
        return self.directory / f"features-{_code_key()}-{space}-{safe}.npz"

    def _table(self, space: str, dataset: str) -> dict[str, GraphFeatures]:
        key = (space, dataset)
        if key not in self._mem:
            self._mem[key] = self._read(space, dataset) if self.directory else {}
        return self._mem[key]

    def _read(self, space: str, dataset: str) -> dict[str, GraphFeatures]:
        main = self._file(space, dataset)
        shards = sorted(main.parent.glob(main.stem + "+*.npz"))
        out: dict[str, GraphFeatures] = {}
        for p in [main, *shards]:
            if p.exists():
                out.update(_read_file(p))
        if len(shards) > self.MAX_SHARDS:  # merge: one file again
            self._write(main, out, list(out))
            for p in shards:
                p.unlink(missing_ok=True)
        return out

    def _write(self, path: Path, table: dict[str, GraphFeatures], archs: list[str]) -> None:
        feats = [table[a] for a in archs]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            archs=np.array(json.dumps(archs)),
            node_offsets=np.cumsum([0] + [f.num_nodes for f in feats]),
            edge_offsets=np.cumsum([0] + [len(f.senders) for f in feats]),
            nodes=np.concatenate([f.nodes for f in feats]).astype(np.float16),
            senders=np.concatenate([f.senders for f in feats]),
            receivers=np.concatenate([f.receivers for f in feats]),
            globals=np.stack([f.globals for f in feats]),
        )
        os.replace(tmp, path)

    def flush(self) -> None:
        """Write the entries added since the last flush (a new shard per table)."""
        if not self.directory:
            self._new.clear()
            return
        for (space, dataset), archs in sorted(self._new.items()):
            if not archs:
                continue
            main = self._file(space, dataset)
            shard = main.with_name(f"{main.stem}+{os.getpid()}-{time.time_ns()}.npz")
            self._write(shard, self._mem[(space, dataset)], archs)
        self._new.clear()

    def get(self, graphs: Sequence[GraphLike], flush: bool = True) -> list[GraphFeatures]:
        """Features of every graph, built once and cached by (space, arch, dataset)."""
        out: list[GraphFeatures] = []
        for g in graphs:
            ref = ref_of(g)
            if ref is None:
                out.append(_round(graph_features(as_graph(g))))
                continue
            table = self._table(ref.space, ref.dataset)
            f = table.get(ref.arch)
            if f is None:
                f = _round(graph_features(_fresh_graph(g)))
                table[ref.arch] = f
                self._new.setdefault((ref.space, ref.dataset), []).append(ref.arch)
            out.append(f)
        if flush:
            self.flush()
        return out


def _fresh_graph(g: GraphLike) -> Any:
    """The graph to featurise: for a reference to a space with a light builder its
    :class:`~nas.predictors.lite.LiteGraph` (the same features, several times faster), else
    the IR graph."""
    if isinstance(g, ArchRef):
        from nas.predictors.lite import lite_graph

        lite = lite_graph(g.space, g.arch, g.dataset)
        if lite is not None:
            return lite
    return as_graph(g)


def _read_file(path: Path) -> dict[str, GraphFeatures]:
    """One cache file's entries (none when it is corrupt or foreign: they are rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            archs = json.loads(str(z["archs"]))
            no, eo = z["node_offsets"], z["edge_offsets"]
            nodes, snd, rcv, glb = z["nodes"], z["senders"], z["receivers"], z["globals"]
    except (OSError, ValueError, KeyError):
        return {}
    return {
        a: GraphFeatures(
            nodes[no[i] : no[i + 1]].astype(np.float32),
            snd[eo[i] : eo[i + 1]],
            rcv[eo[i] : eo[i + 1]],
            glb[i].astype(np.float32),
        )
        for i, a in enumerate(archs)
    }


def _round(f: GraphFeatures) -> GraphFeatures:
    """Features at the cache's precision, so cached and fresh features are identical."""
    return GraphFeatures(
        f.nodes.astype(np.float16).astype(np.float32), f.senders, f.receivers, f.globals
    )


_DEFAULT: FeatureStore | None = None


def default_store() -> FeatureStore:
    global _DEFAULT
    if _DEFAULT is None:
        try:
            _DEFAULT = FeatureStore()
        except OSError as e:  # pragma: no cover - unwritable home
            raise DataError(f"cannot use the feature cache: {e}") from None
    return _DEFAULT


def features(graphs: Iterable[GraphLike]) -> list[GraphFeatures]:
    """Features of ``graphs`` through the default on-disk cache."""
    return default_store().get(list(graphs))


def global_matrix(feats: Sequence[GraphFeatures]) -> np.ndarray:
    return np.stack([f.globals for f in feats]).astype(np.float32)


def describe(f: GraphFeatures) -> dict[str, Any]:
    """A readable summary (for debugging and docs)."""
    cats = [CATEGORIES[int(np.argmax(r[: len(CATEGORIES)]))] for r in f.nodes]
    counts: dict[str, int] = {}
    for c in cats:
        counts[c] = counts.get(c, 0) + 1
    return {
        "nodes": f.num_nodes,
        "edges": len(f.senders),
        "categories": counts,
        "globals": dict(zip(GLOBALS, f.globals.tolist(), strict=True)),
    }
