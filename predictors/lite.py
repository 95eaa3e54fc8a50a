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
    g = LiteGraph(network.NB201_CONVENTION)
    return network.build(sp.parse(arch).ops, shape, classes, channels, cells, graph=g)
