"""The universal architecture graph (IR).

Every search space expands its genotypes into an :class:`ArchGraph`: a networkx DAG whose
nodes are atomic operations from one closed vocabulary (:data:`OPS`) and whose edges carry
data, with the position of each input (``index``) so that order-sensitive operations such as
``concat`` are unambiguous. Shapes are inferred per sample (no batch axis), feature maps as
``(H, W, C)`` and vectors as ``(F,)``.

One IR for every space is what lets one cost counter, one model builder, one exporter and
one predictor serve them all.

Example:
    >>> g = ArchGraph.sequential((8, 8, 1), [
    ...     ("conv", {"out_channels": 4, "kernel": 3, "padding": 1}),
    ...     ("relu", {}),
    ...     ("global_pool", {}),
    ...     ("dense", {"out_features": 10}),
    ... ])
    >>> g.shape(g.output)
    (10,)
    >>> g.params()
    86
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nas.errors import GraphError, UnknownOp
from nas.inputs import parse_json

SCHEMA_VERSION = 1
SCHEMA_NAME = "nas.archgraph"

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------
# Counting conventions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostConvention:
    """How a benchmark counts FLOPs (multiply-accumulates). A property of the network.

    Attributes:
        conv_bias: add one MAC per output element for a convolution bias.
        dense_bias: add one MAC per output feature for a dense-layer bias.
        dense: count dense layers at all (every known convention does).
    """

    conv_bias: bool = False
    dense_bias: bool = False
    dense: bool = True

    def to_json(self) -> dict[str, bool]:
        return {"conv_bias": self.conv_bias, "dense_bias": self.dense_bias, "dense": self.dense}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CostConvention:
        return cls(**{k: bool(v) for k, v in d.items()})


# --------------------------------------------------------------------------------------
# The operation vocabulary
# --------------------------------------------------------------------------------------


def _pair(v: Any, name: str, node: Any) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise GraphError(f"node {node!r}: {name} must be an int or a pair of ints, got {v!r}")


def _padding(v: Any, node: Any) -> tuple[int, int, int, int]:
    """Padding as (top, bottom, left, right)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v, v, v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v):
        if len(v) == 2:
            return (v[0], v[0], v[1], v[1])
        if len(v) == 4:
            return tuple(int(x) for x in v)  # type: ignore[return-value]
    raise GraphError(f"node {node!r}: padding must be an int, [h, w] or [t, b, l, r], got {v!r}")


def _need_map(shape: Shape, node: Any, op: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise GraphError(f"node {node!r}: {op} needs an (H, W, C) feature map, got shape {shape}")
    return shape  # type: ignore[return-value]


def _spatial_out(h: int, w: int, k, s, pad, dil, node) -> tuple[int, int]:
    kh, kw = k
    sh, sw = s
    dh, dw = dil
    t, b, left, r = pad
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + r - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise GraphError(
            f"node {node!r}: a {kh}x{kw} window with stride {s} on a {h}x{w} map leaves no output"
        )
    return oh, ow


@dataclass(frozen=True)
class OpSpec:
    """One operation type of the IR.

    Attributes:
        name: the op type.
        arity: number of inputs (``None`` for variadic, at least ``min_inputs``).
        defaults: every accepted attribute with its default (``...`` for required).
        infer: ``(attrs, input_shapes, node) -> output shape``.
        params: ``(attrs, input_shapes, output_shape) -> trainable parameter count``.
        macs: ``(attrs, input_shapes, output_shape, convention) -> multiply-accumulates``.
        commutative: inputs may be reordered without changing the result.
    """

    name: str
    arity: int | None
    defaults: Mapping[str, Any]
    infer: Callable[[dict, list[Shape], Any], Shape]
    params: Callable[[dict, list[Shape], Shape], int] = lambda a, i, o: 0
    macs: Callable[[dict, list[Shape], Shape, CostConvention], int] = lambda a, i, o, c: 0
    commutative: bool = False
    min_inputs: int = 1


REQUIRED = ...


def _same(attrs, ins, node):
    return ins[0]


def _infer_input(attrs, ins, node):
    shape = attrs["shape"]
    if not isinstance(shape, (list, tuple)) or not all(isinstance(x, int) and x > 0 for x in shape):
        raise GraphError(f"node {node!r}: input shape must be positive ints, got {shape!r}")
    return tuple(shape)


def _infer_conv(attrs, ins, node):
    h, w, c = _need_map(ins[0], node, "conv")
    groups = attrs["groups"]
    cout = attrs["out_channels"]
    if not isinstance(cout, int) or cout <= 0:
        raise GraphError(f"node {node!r}: out_channels must be a positive int, got {cout!r}")
    if not isinstance(groups, int) or groups <= 0 or c % groups or cout % groups:
        raise GraphError(
            f"node {node!r}: groups={groups!r} must divide in_channels={c} and out_channels={cout}"
        )
    oh, ow = _spatial_out(
        h,
        w,
        _pair(attrs["kernel"], "kernel", node),
        _pair(attrs["stride"], "stride", node),
        _padding(attrs["padding"], node),
        _pair(attrs["dilation"], "dilation", node),
        node,
    )
    return (oh, ow, cout)


def _conv_params(attrs, ins, out):
    kh, kw = _pair(attrs["kernel"], "kernel", None)
    cin = ins[0][-1]
    n = kh * kw * (cin // attrs["groups"]) * out[-1]
    return n + (out[-1] if attrs["bias"] else 0)


def _conv_macs(attrs, ins, out, conv: CostConvention):
    kh, kw = _pair(attrs["kernel"], "kernel", None)
    cin = ins[0][-1]
    oh, ow, cout = out
    n = oh * ow * kh * kw * (cin // attrs["groups"]) * cout
    if attrs["bias"] and conv.conv_bias:
        n += oh * ow * cout
    return n


def _infer_dense(attrs, ins, node):
    fo = attrs["out_features"]
    if not isinstance(fo, int) or fo <= 0:
        raise GraphError(f"node {node!r}: out_features must be a positive int, got {fo!r}")
    return tuple(ins[0][:-1]) + (fo,)


def _dense_params(attrs, ins, out):
    return ins[0][-1] * out[-1] + (out[-1] if attrs["bias"] else 0)


def _dense_macs(attrs, ins, out, conv: CostConvention):
    if not conv.dense:
        return 0
    lead = math.prod(out[:-1])
    n = lead * ins[0][-1] * out[-1]
    if attrs["bias"] and conv.dense_bias:
        n += lead * out[-1]
    return n


def _bn_params(attrs, ins, out):
    return 2 * out[-1] if attrs["affine"] else 0


def _infer_elementwise_n(attrs, ins, node):
    first = ins[0]
    for s in ins[1:]:
        if s != first:
            raise GraphError(f"node {node!r}: inputs must have equal shapes, got {ins}")
    return first


def _infer_mul(attrs, ins, node):
    # Broadcasting multiply (squeeze-and-excitation gates): (1,1,C) * (H,W,C).
    a, b = ins
    if len(a) != len(b):
        raise GraphError(f"node {node!r}: cannot multiply shapes {a} and {b}")
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and 1 not in (x, y):
            raise GraphError(f"node {node!r}: cannot broadcast shapes {a} and {b}")
        out.append(max(x, y))
    return tuple(out)


def _infer_concat(attrs, ins, node):
    spatial = ins[0][:-1]
    for s in ins[1:]:
        if s[:-1] != spatial:
            raise GraphError(f"node {node!r}: concat inputs differ outside channels: {ins}")
    return tuple(spatial) + (sum(s[-1] for s in ins),)


def _infer_pool(attrs, ins, node):
    h, w, c = _need_map(ins[0], node, "pool")
    oh, ow = _spatial_out(
        h,
        w,
        _pair(attrs["kernel"], "kernel", node),
        _pair(attrs["stride"], "stride", node),
        _padding(attrs["padding"], node),
        (1, 1),
        node,
    )
    return (oh, ow, c)


def _infer_global_pool(attrs, ins, node):
    h, w, c = _need_map(ins[0], node, "global_pool")
    if attrs["mode"] not in ("avg", "max"):
        raise GraphError(f"node {node!r}: global_pool mode must be avg or max")
    return (1, 1, c) if attrs["keepdims"] else (c,)


def _infer_flatten(attrs, ins, node):
    return (math.prod(ins[0]),)


def _infer_zero(attrs, ins, node):
    s = ins[0]
    stride = attrs["stride"]
    cout = attrs["out_channels"] or s[-1]
    if len(s) == 3:
        return (-(-s[0] // stride), -(-s[1] // stride), cout)
    return s


def _infer_shuffle(attrs, ins, node):
    s = _need_map(ins[0], node, "channel_shuffle")
    if s[-1] % attrs["groups"]:
        raise GraphError(f"node {node!r}: {s[-1]} channels do not split into {attrs['groups']}")
    return s


def _infer_pad_crop(sign):
    def infer(attrs, ins, node):
        h, w, c = _need_map(ins[0], node, "pad/crop")
        t, b, left, r = (attrs[k] for k in ("top", "bottom", "left", "right"))
        if min(t, b, left, r) < 0:
            raise GraphError(f"node {node!r}: pad/crop amounts must be >= 0")
        oh, ow = h + sign * (t + b), w + sign * (left + r)
        if oh <= 0 or ow <= 0:
            raise GraphError(f"node {node!r}: cropping {h}x{w} by {(t, b, left, r)} leaves nothing")
        return (oh, ow, c)

    return infer


def _infer_split(attrs, ins, node):
    s = ins[0]
    start, size = attrs["start"], attrs["size"]
    if start < 0 or size <= 0 or start + size > s[-1]:
        raise GraphError(
            f"node {node!r}: channel slice [{start}, {start + size}) outside {s[-1]} channels"
        )
    return tuple(s[:-1]) + (size,)


_ELEMENTWISE = ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "tanh", "gelu")

OPS: dict[str, OpSpec] = {
    "input": OpSpec("input", 0, {"shape": REQUIRED}, _infer_input, min_inputs=0),
    "output": OpSpec("output", 1, {}, _same),
    "conv": OpSpec(
        "conv",
        1,
        {
            "out_channels": REQUIRED,
            "kernel": REQUIRED,
            "stride": 1,
            "padding": 0,
            "dilation": 1,
            "groups": 1,
            "bias": False,
        },
        _infer_conv,
        _conv_params,
        _conv_macs,
    ),
    "dense": OpSpec(
        "dense",
        1,
        {"out_features": REQUIRED, "bias": True},
        _infer_dense,
        _dense_params,
        _dense_macs,
    ),
    "batch_norm": OpSpec(
        "batch_norm",
        1,
        {"affine": True, "eps": 1e-5, "momentum": 0.1},
        _same,
        _bn_params,
    ),
    **{name: OpSpec(name, 1, {}, _same) for name in _ELEMENTWISE},
    "add": OpSpec("add", None, {}, _infer_elementwise_n, commutative=True, min_inputs=1),
    "mul": OpSpec("mul", 2, {}, _infer_mul, commutative=True),
    "concat": OpSpec("concat", None, {}, _infer_concat, min_inputs=1),
    "max_pool": OpSpec("max_pool", 1, {"kernel": REQUIRED, "stride": 1, "padding": 0}, _infer_pool),
    "avg_pool": OpSpec(
        "avg_pool",
        1,
        {"kernel": REQUIRED, "stride": 1, "padding": 0, "count_include_pad": True},
        _infer_pool,
    ),
    "global_pool": OpSpec("global_pool", 1, {"mode": "avg", "keepdims": False}, _infer_global_pool),
    "flatten": OpSpec("flatten", 1, {}, _infer_flatten),
    "identity": OpSpec("identity", 1, {}, _same),
    "zero": OpSpec("zero", 1, {"stride": 1, "out_channels": 0}, _infer_zero),
    "dropout": OpSpec("dropout", 1, {"rate": 0.0}, _same),
    "channel_shuffle": OpSpec("channel_shuffle", 1, {"groups": 2}, _infer_shuffle),
    "split": OpSpec("split", 1, {"start": REQUIRED, "size": REQUIRED}, _infer_split),
    # Zero padding / cropping of the spatial borders (DARTS' FactorizedReduce shifts by one
    # pixel with a crop; TF-style asymmetric "SAME" padding is a pad).
    "pad": OpSpec("pad", 1, {"top": 0, "bottom": 0, "left": 0, "right": 0}, _infer_pad_crop(1)),
    "crop": OpSpec("crop", 1, {"top": 0, "bottom": 0, "left": 0, "right": 0}, _infer_pad_crop(-1)),
}
"""The closed vocabulary of atomic operations."""

PARAMETRIC_OPS = frozenset({"conv", "dense", "batch_norm"})


def _canon_attr(v: Any) -> Any:
    """Attributes as JSON-stable values (tuples become lists)."""
    if isinstance(v, tuple):
        return [_canon_attr(x) for x in v]
    if isinstance(v, list):
        return [_canon_attr(x) for x in v]
    if isinstance(v, dict):
        return {k: _canon_attr(x) for k, x in sorted(v.items())}
    return v


# --------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------


@dataclass
class ArchGraph:
    """A validated DAG of atomic operations with inferred shapes.

    Build it with :meth:`add` (or :meth:`sequential`), then call :meth:`finalize` (which
    validates and infers shapes). Node ids are ints assigned in insertion order unless given.

    Attributes:
        g: the underlying ``networkx.DiGraph``. Node attributes: ``op`` (str), ``attrs``
            (dict), ``shape`` (tuple, after finalize), optional ``scope`` (str, the block the
            node belongs to, for diagrams and weight transfer). Edge attribute ``index``:
            the position of the source among the target's inputs.
        meta: free-form JSON metadata (space, genotype, dataset, ...).
        convention: the FLOPs counting convention of the network.
    """

    g: nx.DiGraph = field(default_factory=nx.DiGraph)
    meta: dict[str, Any] = field(default_factory=dict)
    convention: CostConvention = field(default_factory=CostConvention)
    _next: int = 0
    _final: bool = False

    # ---------------- construction ----------------

    def add(
        self,
        op: str,
        inputs: Sequence[int] | int = (),
        scope: str = "",
        **attrs: Any,
    ) -> int:
        """Add a node computing ``op`` over ``inputs`` (in order); returns its id."""
        if op not in OPS:
            raise UnknownOp(f"unknown op {op!r}; the IR vocabulary is {sorted(OPS)}")
        if isinstance(inputs, int):
            inputs = (inputs,)
        node = self._next
        self._next += 1
        self.g.add_node(node, op=op, attrs=dict(attrs), scope=scope)
        for i, src in enumerate(inputs):
            if src not in self.g:
                raise GraphError(f"node {node} ({op}): input {src!r} does not exist")
            if self.g.has_edge(src, node):
                raise GraphError(
                    f"node {node} ({op}): input {src} used twice; route it through an identity"
                )
            self.g.add_edge(src, node, index=i)
        self._final = False
        return node

    @classmethod
    def sequential(
        cls,
        input_shape: Sequence[int],
        layers: Iterable[tuple[str, Mapping[str, Any]]],
        convention: CostConvention | None = None,
    ) -> ArchGraph:
        """A chain of ops from one input to one output."""
        graph = cls(convention=convention or CostConvention())
        x = graph.add("input", shape=list(input_shape))
        for op, attrs in layers:
            x = graph.add(op, [x], **dict(attrs))
        graph.add("output", [x])
        return graph.finalize()

    # ---------------- access ----------------

    def op(self, node: int) -> str:
        return self.g.nodes[node]["op"]

    def attrs(self, node: int) -> dict[str, Any]:
        """The node's attributes with defaults filled in."""
        spec = OPS[self.op(node)]
        out = {k: v for k, v in spec.defaults.items() if v is not REQUIRED}
        out.update(self.g.nodes[node]["attrs"])
        return out

    def inputs(self, node: int) -> list[int]:
        """The node's inputs in order."""
        preds = [(d["index"], u) for u, _, d in self.g.in_edges(node, data=True)]
        return [u for _, u in sorted(preds)]

    def shape(self, node: int) -> Shape:
        self._require_final()
        return self.g.nodes[node]["shape"]

    @property
    def input(self) -> int:
        self._require_final()
        return self._input

    @property
    def output(self) -> int:
        self._require_final()
        return self._output

    def topological(self) -> list[int]:
        """Nodes in a deterministic topological order (ties broken by id)."""
        return list(nx.lexicographical_topological_sort(self.g))

    def __len__(self) -> int:
        return self.g.number_of_nodes()

    def _require_final(self) -> None:
        if not self._final:
            raise GraphError("graph is not finalized; call finalize() first")

    # ---------------- validation and shapes ----------------

    def finalize(self) -> ArchGraph:
        """Validate the graph and infer every node's shape. Returns ``self``.

        Raises:
            GraphError: naming the offending node: a cycle, a missing or unknown attribute,
                a wrong number of inputs, shapes that do not agree, several inputs/outputs.
            UnknownOp: a node whose op is outside :data:`OPS`.
        """
        g = self.g
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            raise GraphError(f"graph has a cycle through nodes {[u for u, _ in cycle]}")
        ins = [n for n in g if g.nodes[n]["op"] == "input"]
        outs = [n for n in g if g.nodes[n]["op"] == "output"]
        if len(ins) != 1:
            raise GraphError(f"graph must have exactly one input node, found {len(ins)}")
        if len(outs) != 1:
            raise GraphError(f"graph must have exactly one output node, found {len(outs)}")
        for n in g:
            if g.out_degree(n) == 0 and n != outs[0]:
                raise GraphError(
                    f"node {n} ({g.nodes[n]['op']}) is a dead end: only the output node may "
                    "have no consumers"
                )
        for n in self.topological():
            data = g.nodes[n]
            op = data["op"]
            if op not in OPS:
                raise UnknownOp(f"node {n}: unknown op {op!r}; the IR vocabulary is {sorted(OPS)}")
            spec = OPS[op]
            unknown = set(data["attrs"]) - set(spec.defaults)
            if unknown:
                raise GraphError(
                    f"node {n} ({op}): unknown attribute(s) {sorted(unknown)}; "
                    f"accepted: {sorted(spec.defaults)}"
                )
            missing = [
                k for k, v in spec.defaults.items() if v is REQUIRED and k not in data["attrs"]
            ]
            if missing:
                raise GraphError(f"node {n} ({op}): missing attribute(s) {missing}")
            preds = self.inputs(n)
            idx = sorted(d["index"] for _, _, d in g.in_edges(n, data=True))
            if idx != list(range(len(idx))):
                raise GraphError(f"node {n} ({op}): input indices {idx} are not 0..{len(idx) - 1}")
            if spec.arity is not None and len(preds) != spec.arity:
                raise GraphError(
                    f"node {n} ({op}): expects {spec.arity} input(s), got {len(preds)}"
                )
            if spec.arity is None and len(preds) < spec.min_inputs:
                raise GraphError(
                    f"node {n} ({op}): expects at least {spec.min_inputs} inputs, got {len(preds)}"
                )
            in_shapes = [g.nodes[p]["shape"] for p in preds]
            data["shape"] = tuple(int(x) for x in spec.infer(self.attrs(n), in_shapes, n))
        self._input, self._output = ins[0], outs[0]
        self._final = True
        return self

    # ---------------- cost ----------------

    def node_params(self, node: int) -> int:
        spec = OPS[self.op(node)]
        ins = [self.shape(p) for p in self.inputs(node)]
        return int(spec.params(self.attrs(node), ins, self.shape(node)))

    def node_macs(self, node: int) -> int:
        spec = OPS[self.op(node)]
        ins = [self.shape(p) for p in self.inputs(node)]
        return int(spec.macs(self.attrs(node), ins, self.shape(node), self.convention))

    def params(self) -> int:
        """Trainable parameters (BatchNorm scale/offset included, running statistics not)."""
        self._require_final()
        return sum(self.node_params(n) for n in self.g if self.op(n) in PARAMETRIC_OPS)

    def flops(self) -> int:
        """Multiply-accumulates of one sample under the graph's :class:`CostConvention`."""
        self._require_final()
        return sum(self.node_macs(n) for n in self.g if self.op(n) in PARAMETRIC_OPS)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.g:
            counts[self.op(n)] = counts.get(self.op(n), 0) + 1
        return dict(sorted(counts.items()))

    # ---------------- hashing ----------------

    def canonical_hash(self) -> str:
        """A hash equal for isomorphic graphs and for graphs computing the same function.

        The graph is first reduced to its computation: ``zero`` values propagate through
        operations that map zero to zero (a ``conv`` without bias, activations with
        ``f(0) = 0``, pooling, ``batch_norm``, whose output is then a learned constant) and
        are dropped from sums; ``identity`` and ``dropout`` forward their input; nested sums
        are flattened; nodes that do not reach the output do not count. Every remaining node
        gets a Merkle hash of its op, attributes, output shape and its inputs' hashes (sorted
        for commutative ops, ordered otherwise). The result combines the output's hash with
        the multiset of live parametric node hashes, so that two separately parametrised
        copies of a layer differ from one shared layer.
        """
        self._require_final()
        memo: dict[int, Any] = {}
        for n in self.topological():
            op = self.op(n)
            ins = [memo[p] for p in self.inputs(n)]
            attrs = self.attrs(n)
            shape = list(self.shape(n))
            if op == "input":
                memo[n] = _h(["input", shape])
            elif op in ("identity", "dropout", "output"):
                memo[n] = ins[0]
            elif op == "zero":
                memo[n] = _zero(shape)
            elif op == "add":
                terms: list[str] = []
                for x in ins:
                    if isinstance(x, tuple):
                        terms.extend(x[1])
                    elif not _is_zero(x):
                        terms.append(x)
                if not terms:
                    memo[n] = _zero(shape)
                elif len(terms) == 1:
                    memo[n] = terms[0]
                else:
                    memo[n] = ("sum", sorted(terms))
            elif any(_is_zero(x) for x in ins) and (
                op == "mul" or (all(_is_zero(x) for x in ins) and _keeps_zero(op, attrs))
            ):
                memo[n] = _zero(shape)
            else:
                resolved = [_resolve(x) for x in ins]
                if OPS[op].commutative:
                    resolved = sorted(resolved)
                memo[n] = _h([op, _canon_attr(attrs), shape, resolved])
        out = _resolve(memo[self._output])
        # Nodes whose value reaches the output: not through a zero, not from a dead branch.
        live: set[int] = set()
        stack = [self._output]
        while stack:
            n = stack.pop()
            if n in live:
                continue
            live.add(n)
            if self.op(n) == "zero" or _is_zero(memo[n]):
                continue
            for p in self.inputs(n):
                if not (_is_zero(memo[p]) and self.op(n) in ("add", "concat")):
                    stack.append(p)
        param_hashes = sorted(
            memo[n] for n in live if self.op(n) in PARAMETRIC_OPS and not _is_zero(memo[n])
        )
        return _h(["archgraph", out, param_hashes])[:32]

    # ---------------- serialisation ----------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict following the versioned schema ``nas.archgraph`` v1."""
        self._require_final()
        nodes = []
        for n in self.topological():
            d = self.g.nodes[n]
            nodes.append(
                {
                    "id": n,
                    "op": d["op"],
                    "attrs": _canon_attr(d["attrs"]),
                    "inputs": self.inputs(n),
                    "shape": list(d["shape"]),
                    **({"scope": d["scope"]} if d.get("scope") else {}),
                }
            )
        return {
            "schema": SCHEMA_NAME,
            "version": SCHEMA_VERSION,
            "convention": self.convention.to_json(),
            "meta": self.meta,
            "nodes": nodes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ArchGraph:
        """Rebuild a graph written by :meth:`to_json`; validates and re-infers shapes.

        Raises:
            GraphError: anything malformed (it may come from a file anyone wrote).
        """
        if not isinstance(data, Mapping):
            raise GraphError("not an architecture graph: expected a JSON object")
        try:
            return cls._from_json(data)
        except GraphError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            text = str(e).splitlines()[0][:120] if str(e) else ""
            raise GraphError(
                f"malformed architecture graph JSON: {type(e).__name__} {text}"
            ) from None

    @classmethod
    def _from_json(cls, data: Mapping[str, Any]) -> ArchGraph:
        if data.get("schema") != SCHEMA_NAME:
            raise GraphError(f"not an architecture graph: schema is {data.get('schema')!r}")
        if data.get("version") != SCHEMA_VERSION:
            raise GraphError(
                f"architecture graph schema version {data.get('version')!r} is not supported "
                f"(this platform reads version {SCHEMA_VERSION})"
            )
        graph = cls(
            meta=dict(data.get("meta", {})),
            convention=CostConvention.from_json(data.get("convention", {})),
        )
        try:
            nodes = list(data["nodes"])
            for nd in nodes:
                if nd["op"] not in OPS:
                    raise UnknownOp(f"node {nd['id']}: unknown op {nd['op']!r}")
                graph.g.add_node(
                    nd["id"],
                    op=nd["op"],
                    attrs=dict(nd.get("attrs", {})),
                    scope=nd.get("scope", ""),
                )
            for nd in nodes:
                for i, src in enumerate(nd.get("inputs", [])):
                    if src not in graph.g:
                        raise GraphError(f"node {nd['id']}: input {src!r} does not exist")
                    graph.g.add_edge(src, nd["id"], index=i)
        except (KeyError, TypeError) as e:
            raise GraphError(f"malformed architecture graph JSON: {e!r}") from None
        graph._next = max(graph.g.nodes, default=-1) + 1
        graph.finalize()
        for nd in nodes:
            if "shape" in nd and tuple(nd["shape"]) != graph.shape(nd["id"]):
                raise GraphError(
                    f"node {nd['id']}: stored shape {nd['shape']} disagrees with inferred "
                    f"{list(graph.shape(nd['id']))}"
                )
        return graph

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> ArchGraph:
        return cls.from_json(parse_json(text, "architecture graph", GraphError))

    def summary(self) -> dict[str, Any]:
        return {
            "params": self.params(),
            "flops": self.flops(),
            "nodes": len(self),
            "edges": self.g.number_of_edges(),
            "hash": self.canonical_hash(),
            "input_shape": list(self.shape(self.input)),
            "output_shape": list(self.shape(self.output)),
        }


_ZERO_PRESERVING = frozenset(
    {
        "relu",
        "relu6",
        "tanh",
        "gelu",
        "swish",
        "hswish",
        "max_pool",
        "avg_pool",
        "global_pool",
        "flatten",
        "channel_shuffle",
        "split",
        "concat",
        "batch_norm",
    }
)


def _keeps_zero(op: str, attrs: Mapping[str, Any]) -> bool:
    if op in ("conv", "dense"):
        return not attrs["bias"]
    return op in _ZERO_PRESERVING


def _h(obj: Any) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _zero(shape: Sequence[int]) -> str:
    return "0" + json.dumps(list(shape), separators=(",", ":"))


def _is_zero(x: Any) -> bool:
    return isinstance(x, str) and x.startswith("0[")


def _resolve(x: Any) -> str:
    """A node value as one string."""
    if isinstance(x, tuple):
        return _h(["add", x[1]])
    return x
