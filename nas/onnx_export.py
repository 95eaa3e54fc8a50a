"""The IR written as an ONNX graph.

:func:`graph_to_onnx` maps every op of the closed IR vocabulary to standard ONNX operators
(each op's ``onnx`` lowering, :mod:`nas.ops`). The ONNX graph computes feature maps in NCHW
(the layout every ONNX runtime is fastest in): a ``Transpose`` turns the NHWC input
``input`` of shape ``[N, H, W, C]`` into NCHW and the output ``output`` comes back in the
IR's layout (NHWC for feature maps, ``[N, T, D]`` for sequences, ``[N, F]`` for vectors).
Token ids come in as an int32 ``[N, T]`` input. Weights come from the flax model built by :func:`nas.model.build_model`
(``model.layers[str(node_id)]``, BatchNorm in eval mode: running statistics); without a
model they are zeros, random numbers, or (``fill="none"``) declared graph inputs, which is
enough for structure-only uses such as the text predictor.

Every ONNX node is named ``"{scope}/{op}:{node_id}"`` after the IR node it comes from (one
IR node may emit several ONNX nodes), so that readers can regroup the ONNX graph by block.

Example:
    >>> from nas.graph import ArchGraph
    >>> g = ArchGraph.sequential((8, 8, 1), [("conv", {"out_channels": 4, "kernel": 3}),
    ...     ("relu", {}), ("global_pool", {}), ("dense", {"out_features": 3})])
    >>> proto = graph_to_onnx(g)
    >>> [n.op_type for n in proto.graph.node]
    ['Transpose', 'Conv', 'Relu', 'GlobalAveragePool', 'Flatten', 'Gemm', 'Identity']
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import ConfigError, GraphError
from nas.graph import ArchGraph
from nas.ops import OPS, Node

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from nas.model import GraphModel

OPSET = 21
"""ONNX opset of the exported graphs (``Gelu`` needs 20, ``HardSwish`` 14)."""

FILLS = ("zeros", "random", "none")


def _onnx():
    try:
        import onnx
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        raise ConfigError(
            "ONNX export needs the onnx package: pip install 'nasjax[export]'"
        ) from None
    return onnx


class _Builder:
    """Accumulates ONNX nodes, initialisers and graph inputs."""

    def __init__(self, onnx_mod, fill: str, seed: int, model: GraphModel | None = None) -> None:
        self.onnx = onnx_mod
        self.model = model
        self._weights: dict[tuple[int, str], str] = {}
        self.helper = onnx_mod.helper
        self.nodes: list = []
        self.inits: list = []
        self.param_inputs: list = []
        self.fill = fill
        self.rng = np.random.default_rng(seed)
        self._names: set[str] = set()
        self.prefix = ""

    def name(self, base: str) -> str:
        n, i = base, 1
        while n in self._names:
            i += 1
            n = f"{base}_{i}"
        self._names.add(n)
        return n

    def node(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or self.name(f"t{len(self.nodes)}")
        self.nodes.append(
            self.helper.make_node(
                op_type, inputs, [out], name=self.name(f"{self.prefix}:{op_type}"), **attrs
            )
        )
        return out

    def const(self, base: str, value: np.ndarray) -> str:
        """A constant tensor (always an initialiser: shapes, pads, scalars)."""
        name = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def param(self, base: str, value: np.ndarray | None, shape: tuple[int, ...], kind: str) -> str:
        """A weight: the model's value, or a fill for structure-only graphs."""
        name = self.name(base)
        if value is None and self.fill == "none":
            self.param_inputs.append(
                self.helper.make_tensor_value_info(name, self.onnx.TensorProto.FLOAT, list(shape))
            )
            return name
        if value is None:
            if kind in ("var", "scale"):
                value = np.ones(shape, np.float32)
            elif self.fill == "random" and kind == "weight":
                # Gemm weights are (in, out); convolution weights (out, in/groups, kh, kw).
                fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
                value = self.rng.normal(0, 1 / np.sqrt(fan_in), shape).astype(np.float32)
            else:
                value = np.zeros(shape, np.float32)
        value = np.asarray(value, np.float32)
        if value.shape != tuple(shape):  # pragma: no cover - internal invariant
            raise GraphError(f"{base}: weight shape {value.shape} != expected {shape}")
        self.inits.append(self.onnx.numpy_helper.from_array(value, name))
        return name

    def weight(
        self,
        node: Node,
        variable: str,
        suffix: str,
        shape: tuple[int, ...],
        kind: str,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> str:
        """The initialiser of ``node``'s flax ``variable`` (the model's value put in ONNX's
        layout by ``transform``, or a fill), named ``"{node id}.{suffix}"``."""
        value = None
        if self.model is not None:
            key = str(node.id)
            if key not in self.model.layers:
                raise GraphError(f"the model has no layer for parametric IR node {node.id}")
            var = getattr(self.model.layers[key], variable, None)
            if var is not None:
                value = np.asarray(var[...], np.float32)
                value = transform(value) if transform is not None else value
        name = self.param(f"{node.id}.{suffix}", value, shape, kind)
        self._weights[(node.id, variable)] = name
        return name

    def weight_name(self, node_id: int, variable: str) -> str:
        """The initialiser already written for another node's weight (a tied layer's)."""
        if (node_id, variable) not in self._weights:  # pragma: no cover - graph validated
            raise GraphError(f"node {node_id}'s {variable} is not exported before its use")
        return self._weights[(node_id, variable)]


def graph_to_onnx(
    graph: ArchGraph,
    model: GraphModel | None = None,
    *,
    fill: str = "zeros",
    seed: int = 0,
    opset: int = OPSET,
    check: bool = True,
) -> onnx.ModelProto:
    """The IR ``graph`` as an ONNX model (NCHW inside, the IR's NHWC layout at the borders).

    Args:
        graph: a finalized architecture graph.
        model: the flax model built from ``graph`` whose weights to export (eval mode:
            BatchNorm running statistics, dropout off). ``None`` fills weights per ``fill``.
        fill: without a model: ``"zeros"`` (BatchNorm scale/variance ones), ``"random"``
            (scaled normal weights) or ``"none"`` (weights become graph inputs with declared
            shapes; the cheapest for structure-only uses).
        seed: random seed for ``fill="random"``.
        opset: ONNX opset version (at least 20).
        check: run ``onnx.checker.check_model`` on the result.

    Raises:
        GraphError: the graph is not finalized, or the model does not match it.
        ConfigError: an unknown ``fill`` or an opset below 20.
    """
    onnx = _onnx()
    if fill not in FILLS:
        raise ConfigError(f"fill must be one of {FILLS}, got {fill!r}")
    if opset < 20:
        raise ConfigError(f"opset {opset} is too old; the exporter needs at least 20 (Gelu)")
    graph._require_final()
    if model is not None:
        mg = model.graph()
        if mg.canonical_hash() != graph.canonical_hash() or len(mg) != len(graph):
            raise GraphError("the model was built from another graph than the one exported")
    b = _Builder(onnx, fill, seed, model)
    h = onnx.helper
    TP = onnx.TensorProto
    vals: dict[int, str] = {}
    for n in graph.topological():
        node = graph.node(n)
        b.prefix = f"{node.scope}/{node.op}:{n}" if node.scope else f"{node.op}:{n}"
        vals[n] = OPS[node.op].onnx(b, node, [vals[i] for i in graph.inputs(n)])
    in_shape = graph.shape(graph.input)
    out_shape = graph.shape(graph.output)
    in_type = TP.INT32 if graph.attrs(graph.input)["dtype"] == "int32" else TP.FLOAT
    inputs = [h.make_tensor_value_info("input", in_type, ["N", *in_shape])] + b.param_inputs
    outputs = [h.make_tensor_value_info("output", TP.FLOAT, ["N", *out_shape])]
    onnx_graph = h.make_graph(b.nodes, "archgraph", inputs, outputs, initializer=b.inits)
    proto = h.make_model(
        onnx_graph,
        opset_imports=[h.make_opsetid("", opset)],
        producer_name="nas",
        doc_string=f"IR hash {graph.canonical_hash()}",
    )
    proto.ir_version = min(proto.ir_version, 10)
    meta = {k: v for k, v in graph.meta.items() if isinstance(v, str)}
    for k, v in sorted(meta.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    if check:
        onnx.checker.check_model(proto)
    return proto


def save_onnx(
    graph: ArchGraph, path: str | Path, model: GraphModel | None = None, **kwargs: Any
) -> Path:
    """Write :func:`graph_to_onnx` of ``graph`` to ``path``."""
    proto = graph_to_onnx(graph, model, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())
    return path
