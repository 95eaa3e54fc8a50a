"""An ONNX model made by any tool, read into the IR.

:func:`onnx_to_graph` turns the ONNX graph of a convolutional network (``torch.onnx.export``
of torchvision's ResNets, MobileNets, ShuffleNets, EfficientNets; ``jax2onnx``; a graph built
with ``onnx.helper``) into an :class:`~nas.graph.ArchGraph`, so that every predictor, the cost
counter and the exporter can read it. Only the structure is used: initializers are read
for their shapes, and a model whose weights live in an external file that is absent loads
all the same.

The ONNX graph computes in NCHW; the IR's maps are ``(H, W, C)`` and vectors ``(F,)``, with
the batch axis dropped (a symbolic batch size is fine; a symbolic image size is not: export
with a fixed input size). Operators map to IR ops one to one where they can (``Conv``,
``Gemm``, ``BatchNormalization``, activations, pooling, ``Add``, ``Mul``, ``Concat``,
``Pad``, ``Slice`` on channels), small patterns are recognised (``MatMul`` + ``Add`` as a
dense layer, ``x * Sigmoid(x)`` as ``swish``, ``Reshape``-``Transpose``-``Reshape`` as a
channel shuffle, ``Shape``/``Gather``/``Concat`` chains that compute a ``Reshape`` target),
and a final ``Softmax`` is dropped (a monotone map of the logits; the graph's ``meta``
says so). Anything else is an :class:`~nas.errors.UnknownOp` naming the operator and the
node, before any prediction.

Example:
    >>> import onnx
    >>> from onnx import TensorProto, helper
    >>> w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)
    >>> g = helper.make_graph(
    ...     [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
    ...      helper.make_node("Relu", ["y"], ["z"])], "tiny",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
    ...     [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 8, 16, 16])], [w])
    >>> ir = onnx_to_graph(helper.make_model(g))
    >>> ir.shape(ir.output), ir.params()
    ((16, 16, 8), 216)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.errors import ConfigError, DataError, GraphError, UnknownOp
from nas.graph import ArchGraph
from nas.onnx_fold import fold_constants
from nas.onnx_ops import OpHandlers, _scope, _Value

MAX_BYTES = 256 * 1024 * 1024
"""Largest ONNX file read (the structure of even a large network is a few megabytes; its
weights may be more, and are not needed)."""


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        raise ConfigError(
            "reading ONNX needs the onnx package: pip install 'nas[export]'"
        ) from None
    return onnx


def load_onnx(source: str | Path | Any) -> Any:
    """An ``onnx.ModelProto`` from a path (weights in absent external files are skipped)."""
    onnx = _onnx()
    if not isinstance(source, str | Path):
        return source
    path = Path(source)
    if not path.is_file():
        raise DataError(f"ONNX file {str(path)[:200]!r} does not exist")
    if path.stat().st_size > MAX_BYTES:
        raise DataError(f"{path.name} is larger than {MAX_BYTES >> 20} MB; not read")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises its own DecodeError
        raise DataError(
            f"{path.name} is not an ONNX model: {str(e).splitlines()[0][:200]}"
        ) from None


def onnx_to_graph(source: str | Path | Any, name: str | None = None) -> ArchGraph:
    """The IR of an ONNX model (a path or an ``onnx.ModelProto``); see the module docstring.

    Raises:
        DataError: the file is missing or not ONNX.
        UnknownOp: an operator (or a use of one) the IR cannot represent.
        GraphError: no single image or vector input, several outputs, or shapes the IR
            infers differently from ONNX's own shape inference.
    """
    model = load_onnx(source)
    reader = _Reader(_onnx(), model)
    graph = reader.build()
    label = name or (Path(source).name if isinstance(source, str | Path) else model.graph.name)
    graph.meta.update(source="onnx", name=label, producer=model.producer_name or "unknown")
    if reader.notes:
        graph.meta["notes"] = reader.notes
    return graph


class _Reader(OpHandlers):
    """One pass over the ONNX nodes (they are topologically sorted by the standard)."""

    def __init__(self, onnx_mod, model) -> None:
        self.onnx = onnx_mod
        self.model, self.consts, self.shapes = fold_constants(onnx_mod, model)
        model = self.model
        self.values: dict[str, _Value] = {}
        self.ir = ArchGraph()
        self.notes: list[str] = []
        self.consumers: dict[str, list] = {}
        self.producer: dict[str, Any] = {}
        for nd in model.graph.node:
            for x in nd.input:
                self.consumers.setdefault(x, []).append(nd)
            for x in nd.output:
                self.producer[x] = nd
        self.skip: set[int] = set()

    # ---------------------------------------------------------------- plumbing

    def shape(self, name: str) -> tuple:
        if name in self.consts:
            return tuple(self.consts[name].shape)
        return self.shapes.get(name, ())

    def ir_shape(self, name: str) -> tuple:
        """The shape of an ONNX tensor in the IR's layout, batch dropped."""
        s = self.shape(name)
        if any(d is None for d in s[1:]):
            raise GraphError(f"tensor {name!r} has a dynamic size {s}; export with fixed sizes")
        return (*s[2:], s[1]) if len(s) == 4 else tuple(s[1:])

    def value(self, nd, i: int = 0) -> _Value:
        name = nd.input[i]
        if name not in self.values:
            raise UnknownOp(
                f"ONNX node {nd.name or nd.op_type!r} ({nd.op_type}) reads {name!r}, which is "
                "a constant or an unsupported computation; the IR cannot represent it"
            )
        return self.values[name]

    def emit(self, nd, op: str, inputs: list[_Value], rank: int | None = None, **attrs) -> None:
        scope = _scope(nd.name)
        ids: list[int] = []
        for v in inputs:  # the IR reads a value once per node: a repeat goes via an identity
            ids.append(self.ir.add("identity", [v.node], scope=scope) if v.node in ids else v.node)
        node = self.ir.add(op, ids, scope=scope, **attrs)
        self.values[nd.output[0]] = _Value(node, rank or inputs[0].rank)

    def alias(self, nd, v: _Value) -> None:
        self.values[nd.output[0]] = v

    def refuse(self, nd, why: str = "") -> None:
        raise UnknownOp(
            f"ONNX node {nd.name or '?'!r}: {nd.op_type}{' ' + why if why else ''} has no IR "
            "equivalent (the IR holds convolutional networks: conv, dense, batch norm, "
            "activations, pooling, add, mul, concat, pad, slice, shuffle)"
        )

    # ---------------------------------------------------------------- the pass

    def build(self) -> ArchGraph:
        g = self.model.graph
        # The data input: read first by some node. Other inputs are weights declared as
        # inputs (torch's export_params=False; this project's structure-only exports).
        inputs = [
            vi
            for vi in g.input
            if vi.name not in self.consts
            and any(c.input[0] == vi.name for c in self.consumers.get(vi.name, []))
        ]
        if len(inputs) != 1:
            raise GraphError(f"the ONNX model has {len(inputs)} data inputs; the IR takes one")
        x = inputs[0].name
        if len(self.shape(x)) not in (2, 4):
            raise GraphError(f"ONNX input {x!r} has shape {self.shape(x)}; expected NCHW or NF")
        first = self.consumers.get(x, [])
        if len(first) == 1 and self._perm(first[0]) == [0, 3, 1, 2]:
            # An NHWC input turned into NCHW (this project's own exports): read it as NHWC.
            shape = self.ir_shape(first[0].output[0])
            self.skip.add(list(g.node).index(first[0]))
            x = first[0].output[0]
        else:
            shape = self.ir_shape(x)
        self.values[x] = _Value(self.ir.add("input", shape=list(shape)), len(self.shape(x)))
        for k, nd in enumerate(g.node):
            if k in self.skip:
                continue
            handler = getattr(self, "_op_" + nd.op_type, None)
            if handler is None:
                self.refuse(nd)
            handler(nd)
        if len(g.output) != 1:
            raise GraphError(f"the ONNX model has {len(g.output)} outputs; the IR has one")
        out = self.values.get(g.output[0].name)
        if out is None:
            raise GraphError(f"the ONNX output {g.output[0].name!r} is a constant")
        self.ir.add("output", [out.node])
        self.ir.finalize()
        self._check_shapes()
        return self.ir

    def _check_shapes(self) -> None:
        for name, v in self.values.items():
            want = self.shape(name)
            if not want or any(d is None for d in want[1:]):
                continue
            want_ir = (*want[2:], want[1]) if len(want) == 4 else tuple(want[1:])
            if v.rank == len(want) and tuple(self.ir.shape(v.node)) != tuple(want_ir):
                raise GraphError(
                    f"ONNX tensor {name!r} has shape {want}; the IR computes "
                    f"{self.ir.shape(v.node)} (in HWC): an attribute this reader does not model"
                )
