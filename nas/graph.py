"""The universal architecture graph (IR).

Every search space expands its genotypes into an :class:`ArchGraph`: a networkx DAG whose
nodes are atomic operations from one closed vocabulary (:data:`OPS`, each op defined once in
:mod:`nas.ops`: attributes, shapes, cost, zero semantics, lowerings) and whose edges carry
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nas.errors import GraphError, UnknownOp
from nas.inputs import parse_json
from nas.ops import OPS, PARAMETRIC_OPS, REQUIRED, Node, OpDef, Shape, padding, pair

SCHEMA_VERSION = 1
SCHEMA_NAME = "nas.archgraph"


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
        attention: count attention's two matrix products (``Q K^T`` and the weighted sum of
            the values) as the transformer literature does; see :mod:`nas.ops.sequence`.
    """

    conv_bias: bool = False
    dense_bias: bool = False
    dense: bool = True
    attention: bool = True

    def to_json(self) -> dict[str, bool]:
        return {
            "conv_bias": self.conv_bias,
            "dense_bias": self.dense_bias,
            "dense": self.dense,
            "attention": self.attention,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CostConvention:
        return cls(**{k: bool(v) for k, v in d.items()})


_pair = pair  # kept for modules that import the helpers from here
_padding = padding


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
        if self._final:
            return self._data[node]["op"]
        return self.g.nodes[node]["op"]

    def attrs(self, node: int) -> dict[str, Any]:
        """The node's attributes with defaults filled in."""
        if self._final:  # merged once by finalize
            return dict(self._attrs[node])
        spec = OPS[self.op(node)]
        out = {k: v for k, v in spec.defaults.items() if v is not REQUIRED}
        out.update(self.g.nodes[node]["attrs"])
        return out

    def inputs(self, node: int) -> list[int]:
        """The node's inputs in order."""
        if self._final:  # kept by finalize: the graph cannot change without a new finalize
            return list(self._inputs[node])
        preds = [(d["index"], u) for u, _, d in self.g.in_edges(node, data=True)]
        return [u for _, u in sorted(preds)]

    def shape(self, node: int) -> Shape:
        self._require_final()
        return self._data[node]["shape"]

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
        if self._final:
            return list(self._order)
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
        self._final = False  # the accessors read the graph itself until it is done
        # Each node's inputs by index and a lexicographic topological order (Kahn's
        # algorithm on a heap), read from networkx's adjacency dicts once: its views, built
        # per call, were most of the time a space took to build a network.
        pred, succ, nodes = g._pred, g._succ, g._node
        inputs = {n: sorted(pred[n].items(), key=lambda t: t[1]["index"]) for n in pred}
        order = _lexicographic_order(pred, succ)
        if order is None:
            cycle = nx.find_cycle(g)
            raise GraphError(f"graph has a cycle through nodes {[u for u, _ in cycle]}")
        merged: dict[Any, dict[str, Any]] = {}
        ins = [n for n in order if nodes[n]["op"] == "input"]
        outs = [n for n in order if nodes[n]["op"] == "output"]
        if len(ins) != 1:
            raise GraphError(f"graph must have exactly one input node, found {len(ins)}")
        if len(outs) != 1:
            raise GraphError(f"graph must have exactly one output node, found {len(outs)}")
        for n in order:
            if not succ[n] and n != outs[0]:
                raise GraphError(
                    f"node {n} ({nodes[n]['op']}) is a dead end: only the output node may "
                    "have no consumers"
                )
        for n in order:
            data = nodes[n]
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
            preds = [u for u, _ in inputs[n]]
            idx = [d["index"] for _, d in inputs[n]]
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
            in_shapes = [nodes[p]["shape"] for p in preds]
            attrs = {k: v for k, v in spec.defaults.items() if v is not REQUIRED}
            attrs.update(data["attrs"])
            if spec.refs:
                shape = spec.infer(attrs, in_shapes, n, self._refs(n, spec))
            else:
                shape = spec.infer(attrs, in_shapes, n)
            data["shape"] = tuple(int(x) for x in shape)
            merged[n] = attrs
        # Kept for the accessors (op, attrs, inputs, shape, topological): networkx's views
        # cost more than the work of most callers. Valid until the next add().
        self._order = order
        self._inputs = {n: tuple(u for u, _ in v) for n, v in inputs.items()}
        self._data = {n: nodes[n] for n in order}
        self._attrs = merged
        self._input, self._output = ins[0], outs[0]
        self._final = True
        return self

    def _refs(self, n: int, spec: OpDef) -> dict[str, tuple[str, dict[str, Any], Shape]]:
        """(op, attrs, shape) of the nodes ``n`` names in its reference attributes; each must
        be an ancestor of ``n`` (so it is computed, and its weights exported, first)."""
        out = {}
        for key in spec.refs:
            ref = self.g.nodes[n]["attrs"].get(key)
            if ref not in self.g or ref == n or not nx.has_path(self.g, ref, n):
                raise GraphError(
                    f"node {n} ({spec.name}): {key}={ref!r} must name a node computed before it"
                )
            out[key] = (self.op(ref), self.attrs(ref), self.g.nodes[ref]["shape"])
        return out

    def node(self, n: int) -> Node:
        """Node ``n`` as the op lowerings see it (attributes with defaults, shapes)."""
        return Node(
            n,
            self.op(n),
            self.attrs(n),
            tuple(self.shape(p) for p in self.inputs(n)),
            self.shape(n),
            self.g.nodes[n].get("scope", ""),
        )

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
        return sum(self.node_params(n) for n in self.g)

    def flops(self) -> int:
        """Multiply-accumulates of one sample under the graph's :class:`CostConvention`."""
        self._require_final()
        return sum(self.node_macs(n) for n in self.g)

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.g:
            counts[self.op(n)] = counts.get(self.op(n), 0) + 1
        return dict(sorted(counts.items()))

    # ---------------- hashing ----------------

    def canonical_hash(self) -> str:
        """A hash equal for isomorphic graphs and for graphs computing the same function.

        The graph is first reduced to its computation: ``zero`` values propagate through
        operations that map zero to zero (each op's ``keeps_zero``: a ``conv`` without bias,
        activations with ``f(0) = 0``, pooling, ``batch_norm``, whose output is then a
        learned constant) and are dropped from sums; pass-through ops (``identity``,
        ``dropout``) forward their input; a tied layer names its embedding by what that
        embedding computes; nested sums
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
            spec = OPS[op]
            shape = list(self.shape(n))
            if op == "input":
                memo[n] = _h(["input", shape])
            elif spec.passthrough:
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
                spec.zero_if_any or (all(_is_zero(x) for x in ins) and spec.zero_preserving(attrs))
            ):
                memo[n] = _zero(shape)
            else:
                resolved = [_resolve(x) for x in ins]
                if spec.commutative:
                    resolved = sorted(resolved)
                for key in spec.refs:  # a tied layer names its embedding by what it computes
                    attrs[key] = _resolve(memo[attrs[key]])
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


def _lexicographic_order(pred: Mapping, succ: Mapping) -> list | None:
    """``networkx.lexicographical_topological_sort`` of the graph with these adjacency
    dicts (ties broken by node id), or ``None`` when it has a cycle."""
    import heapq

    indegree = {n: len(p) for n, p in pred.items()}
    heap = [n for n, d in indegree.items() if d == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        n = heapq.heappop(heap)
        order.append(n)
        for m in succ[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(heap, m)
    return order if len(order) == len(indegree) else None


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
