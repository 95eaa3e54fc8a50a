"""Fresh candidates fast: a light stand-in for :class:`~nas.graph.ArchGraph` for features.

Scoring an architecture nobody has seen starts with its IR graph, and for a benchmark cell
the graph costs more than the prediction: an NB201 network is about 230 nodes, and building
them into a validated networkx graph (``add``, then ``finalize``'s checks and shape
inference) took twice as long as :func:`~nas.predictors.features.graph_features` itself.

:class:`LiteGraph` is built by the *same* space code (the space's builder takes the graph to
fill) and answers exactly the questions ``graph_features`` asks (``op``, ``attrs``,
``inputs``, ``shape``, ``node``, costs, ``topological``, ``input``, ``output``), with the
same values: each node's merged attributes, shape and costs come from the op definitions
(:data:`nas.ops.OPS`), computed once per distinct (op, attributes, input shapes,
convention) and then looked up. What it skips is what trusted space code does not need:
networkx, and the checks of ``finalize``. Node ids are insertion order, which is also the
lexicographic topological order ``ArchGraph`` uses (every input is added before its
consumer). The features are therefore identical (tests and
``benchmarks/fresh_candidates.py`` compare them with the reference path).

Each distinct node's :class:`~nas.predictors.features.NodeInfo` (what the features need of
it alone) is kept with its attributes, so featurising a new network computes none of them.
An NB201 network on the benchmark's skeleton is not even built node by node: it is spliced
from the skeleton, each edge op's nodes and the ``add`` nodes, which the space code builds
once per dataset (:class:`_Nb201Splicer`; tests compare the result with the space code's
graph, and its features with the IR graph's for every CIFAR-10 cell).

:func:`lite_graph` builds one for a space that supports it (NB201), else ``None``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nas.errors import GraphError
from nas.graph import CostConvention
from nas.ops import OPS, REQUIRED, Node

if TYPE_CHECKING:
    from nas.predictors.features import NodeInfo

_MEMO: dict[tuple, list] = {}
_CONVENTIONS: dict[CostConvention, int] = {}
"""(op, attributes, input shapes, convention) -> ``[attributes, shape, macs, params,
NodeInfo or None]`` (the predictor's node info, filled on first use)."""


class LiteGraph:
    """An append-only graph of trusted nodes with shapes and costs (see module doc).

    Args:
        convention: the FLOPs counting convention (as ``ArchGraph``'s).
    """

    def __init__(self, convention: CostConvention) -> None:
        self.convention = convention
        self._conv = _CONVENTIONS.setdefault(convention, len(_CONVENTIONS))  # cheap to hash
        self.meta: dict[str, Any] = {}
        self._op: list[str] = []
        self._inputs: list[tuple[int, ...]] = []
        self._rec: list[list] = []
        self._scope: list[str] = []
        self._io: dict[str, int] = {}

    def add(self, op: str, inputs: Sequence[int] | int = (), scope: str = "", **attrs: Any) -> int:
        """Append a node (inputs must exist); returns its id."""
        ins = (inputs,) if isinstance(inputs, int) else tuple(inputs)
        n = len(self._op)
        in_shapes = tuple([self._rec[i][1] for i in ins])
        # Attribute values compare by ``==`` (a call site passes the same types each time);
        # unhashable ones (lists) by their text.
        key: tuple = (op, tuple(attrs.items()), in_shapes, self._conv)
        try:
            rec = _MEMO.get(key)
        except TypeError:
            key = (op, repr(sorted(attrs.items())), in_shapes, self._conv)
            rec = _MEMO.get(key)
        if rec is None:
            spec = OPS[op]
            if spec.refs:
                raise GraphError(f"LiteGraph cannot hold {op!r} (it names other nodes)")
            full = {k: v for k, v in spec.defaults.items() if v is not REQUIRED}
            full.update(attrs)
            shape = tuple(int(x) for x in spec.infer(full, list(in_shapes), n))
            macs = int(spec.macs(full, list(in_shapes), shape, self.convention))
            params = int(spec.params(full, list(in_shapes), shape))
            rec = _MEMO.setdefault(key, [full, shape, macs, params, None])
        self._op.append(op)
        self._inputs.append(ins)
        self._rec.append(rec)
        self._scope.append(scope)
        if op in ("input", "output"):
            self._io[op] = n
        return n

    def finalize(self) -> LiteGraph:
        return self

    def op(self, n: int) -> str:
        return self._op[n]

    def attrs(self, n: int) -> dict[str, Any]:
        return dict(self._rec[n][0])

    def inputs(self, n: int) -> list[int]:
        return list(self._inputs[n])

    def shape(self, n: int) -> tuple[int, ...]:
        return self._rec[n][1]

    def node(self, n: int) -> Node:
        ins = tuple(self._rec[i][1] for i in self._inputs[n])
        return Node(n, self._op[n], self.attrs(n), ins, self._rec[n][1], self._scope[n])

    def node_macs(self, n: int) -> int:
        return self._rec[n][2]

    def node_params(self, n: int) -> int:
        return self._rec[n][3]

    def flops(self) -> int:
        return sum(r[2] for r in self._rec)

    def params(self) -> int:
        return sum(r[3] for r in self._rec)

    def node_infos(self) -> tuple[list[NodeInfo], list[tuple[int, ...]]]:
        """Every node's :class:`~nas.predictors.features.NodeInfo` (computed once per
        distinct node) and inputs, in node order."""
        from nas.predictors.features import node_info

        infos = []
        for n, rec in enumerate(self._rec):
            if rec[4] is None:
                rec[4] = node_info(self, n)
            infos.append(rec[4])
        return infos, self._inputs

    def topological(self) -> list[int]:
        return list(range(len(self._op)))

    @property
    def input(self) -> int:
        return self._io["input"]

    @property
    def output(self) -> int:
        return self._io["output"]


def lite_graph(space: str, arch: str, dataset: str) -> LiteGraph | None:
    """The :class:`LiteGraph` of a benchmark architecture, or ``None`` for a space without
    a light builder (its features then come from the full IR graph)."""
    if space != "nb201":
        return None
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import network

    sp = get_space("nb201")
    dataset = sp.check_dataset(dataset)
    shape, classes = network.DATASETS[dataset]
    channels, cells = sp.skeleton(dataset)
    ops = sp.parse(arch).ops
    if sp.channels is None and sp.cells_per_stage is None:  # the benchmark's skeleton
        return _Nb201Splicer.get(dataset).build(ops)
    g = LiteGraph(network.NB201_CONVENTION)
    return network.build(ops, shape, classes, channels, cells, graph=g)


class _Nb201Splicer:
    """NB201 networks from pieces the space code built once per dataset.

    An NB201 network is a fixed skeleton around 15 copies of one cell, and a cell is its
    six edges' node sequences joined by three ``add`` nodes. The skeleton (a network built
    by :func:`~nas.search_spaces.nb201.network.build` with a placeholder cell), each edge
    op's nodes and the ``add`` nodes come from the space code once per stage; a new cell
    only splices them (the same nodes, inputs, attributes and scopes as the space code
    builds: tests compare both).
    """

    _CACHE: dict[str, _Nb201Splicer] = {}

    @classmethod
    def get(cls, dataset: str) -> _Nb201Splicer:
        if dataset not in cls._CACHE:
            cls._CACHE[dataset] = cls(dataset)
        return cls._CACHE[dataset]

    def __init__(self, dataset: str) -> None:
        from nas.search_spaces import get_space
        from nas.search_spaces.nb201 import network
        from nas.search_spaces.nb201.ops import OPS as EDGE_OPS
        from nas.search_spaces.nb201.ops import edge_op

        shape, classes = network.DATASETS[dataset]
        channels, cells = get_space("nb201").skeleton(dataset)
        self.convention = network.NB201_CONVENTION
        t = LiteGraph(self.convention)
        network.build(("none",) * 6, shape, classes, channels, cells, graph=t)
        # The plan: skeleton nodes as they are, and each cell as (its input, stage, scope).
        self.plan: list[tuple] = []
        self.stage_of: dict[int, int] = {}
        n = 0
        while n < len(t._op):
            scope = t._scope[n]
            if scope.startswith("stage") and "/cell" in scope:
                prefix = scope.rsplit("/", 1)[0]
                stage = int(prefix[5 : prefix.index("/")])
                end = n
                while end < len(t._op) and t._scope[end].startswith(prefix + "/"):
                    end += 1
                self.plan.append(("cell", t._inputs[n][0], end - 1, stage, prefix))
                self.stage_of.setdefault(stage, t._inputs[n][0])
                n = end
            else:
                self.plan.append(("node", n, t._op[n], t._inputs[n], t._rec[n], scope))
                n += 1
        # Per stage: each edge op's nodes and the adds, from the space code.
        self.edges: dict[tuple[int, str], list[tuple[str, list, str]]] = {}
        self.adds: dict[tuple[int, int], list] = {}
        for stage, x in self.stage_of.items():
            in_shape = t._rec[x][1]
            for op in EDGE_OPS:
                g = LiteGraph(self.convention)
                edge_op(g, op, g.add("input", shape=list(in_shape)), in_shape[-1], "")
                self.edges[stage, op] = [
                    (g._op[k], g._rec[k], g._scope[k]) for k in range(1, len(g._op))
                ]
            for k in (1, 2, 3):
                g = LiteGraph(self.convention)
                x0 = g.add("input", shape=list(in_shape))
                g.add("add", [x0] * k)
                self.adds[stage, k] = g._rec[1]

    def _cell(self, ops: Sequence[str], stage: int) -> list[tuple[str, list, tuple[int, ...], str]]:
        """One cell's nodes: ``(op, record, inputs, scope suffix)`` with inputs relative to
        the cell's first node (``-1``: the cell's input)."""
        from nas.search_spaces.nb201.network import EDGES

        out: list[tuple[str, list, tuple[int, ...], str]] = []
        node_ids = [-1]
        for to in (1, 2, 3):
            terms = []
            for e, (t, frm) in enumerate(EDGES):
                if t != to:
                    continue
                prev = node_ids[frm]
                for op, rec, _ in self.edges[stage, ops[e]]:
                    out.append((op, rec, (prev,), f"/e{frm}{to}"))
                    prev = len(out) - 1
                terms.append(prev)
            out.append(("add", self.adds[stage, len(terms)], tuple(terms), f"/n{to}"))
            node_ids.append(len(out) - 1)
        return out

    def build(self, ops: Sequence[str]) -> LiteGraph:
        """The network of the cell ``ops`` (six edge ops in NB201 string order)."""
        g = LiteGraph(self.convention)
        cells = {}
        for stage in self.stage_of:
            nodes = self._cell(ops, stage)
            cells[stage] = (
                [c[0] for c in nodes],
                [c[1] for c in nodes],
                [c[2] for c in nodes],
                [c[3] for c in nodes],
            )
        new: dict[int, int] = {}
        for step in self.plan:
            if step[0] == "node":
                _, n, op, ins, rec, scope = step
                new[n] = len(g._op)
                g._op.append(op)
                g._inputs.append(tuple([new[i] for i in ins]))
                g._rec.append(rec)
                g._scope.append(scope)
                if op in ("input", "output"):
                    g._io[op] = new[n]
                continue
            _, x, last, stage, prefix = step
            x, base = new[x], len(g._op)
            cell_ops, recs, rel, suffixes = cells[stage]
            g._op += cell_ops
            g._rec += recs
            g._inputs += [tuple([base + i if i >= 0 else x for i in ins]) for ins in rel]
            g._scope += [prefix + s for s in suffixes]
            new[last] = len(g._op) - 1
        return g
