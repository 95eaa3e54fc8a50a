"""The IR written as an ONNX graph.

:func:`graph_to_onnx` maps every op of the closed IR vocabulary to standard ONNX operators.
The ONNX graph computes in NCHW (the layout every ONNX runtime is fastest in): a
``Transpose`` turns the NHWC input ``input`` of shape ``[N, H, W, C]`` into NCHW and the
output ``output`` comes back in the IR's layout (NHWC for feature maps, ``[N, F]`` for
vectors). Weights come from the flax model built by :func:`nas.model.build_model`
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

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.errors import ConfigError, GraphError
from nas.graph import ArchGraph, _padding, _pair

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

    def __init__(self, onnx_mod, fill: str, seed: int) -> None:
        self.onnx = onnx_mod
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


def _layer_arrays(model: GraphModel | None, node: int) -> dict[str, np.ndarray]:
    if model is None:
        return {}
    layer = model.layers[str(node)] if str(node) in model.layers else None
    if layer is None:
        raise GraphError(f"the model has no layer for parametric IR node {node}")
    out = {}
    for attr in ("kernel", "bias", "scale", "mean", "var"):
        v = getattr(layer, attr, None)
        if v is not None:
            out[attr] = np.asarray(v[...], np.float32)
    return out


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
    b = _Builder(onnx, fill, seed)
    h = onnx.helper
    TP = onnx.TensorProto
    vals: dict[int, str] = {}
    for n in graph.topological():
        op, attrs, ins = graph.op(n), graph.attrs(n), graph.inputs(n)
        scope = graph.g.nodes[n].get("scope", "")
        b.prefix = f"{scope}/{op}:{n}" if scope else f"{op}:{n}"
        xs = [vals[i] for i in ins]
        in_shapes = [graph.shape(i) for i in ins]
        out_shape = graph.shape(n)
        if op == "input":
            if len(out_shape) == 3:
                y = b.node("Transpose", ["input"], perm=[0, 3, 1, 2])
            else:
                y = b.node("Identity", ["input"])
        elif op == "output":
            if len(out_shape) == 3:
                y = b.node("Transpose", xs, out="output", perm=[0, 2, 3, 1])
            else:
                y = b.node("Identity", xs, out="output")
        elif op == "conv":
            arr = _layer_arrays(model, n)
            kh, kw = _pair(attrs["kernel"], "kernel", n)
            t, bo, left, r = _padding(attrs["padding"], n)
            cin, cout, groups = in_shapes[0][-1], attrs["out_channels"], attrs["groups"]
            wshape = (cout, cin // groups, kh, kw)
            kernel = arr.get("kernel")
            w = b.param(
                f"{n}.weight",
                None if kernel is None else kernel.transpose(3, 2, 0, 1),
                wshape,
                "weight",
            )
            inputs = [xs[0], w]
            if attrs["bias"]:
                inputs.append(b.param(f"{n}.bias", arr.get("bias"), (cout,), "bias"))
            y = b.node(
                "Conv",
                inputs,
                kernel_shape=[kh, kw],
                strides=list(_pair(attrs["stride"], "stride", n)),
                pads=[t, left, bo, r],
                dilations=list(_pair(attrs["dilation"], "dilation", n)),
                group=groups,
            )
        elif op == "dense":
            arr = _layer_arrays(model, n)
            fin, fo = in_shapes[0][-1], attrs["out_features"]
            kernel = arr.get("kernel")
            if len(in_shapes[0]) == 1:
                w = b.param(f"{n}.weight", kernel, (fin, fo), "weight")
                inputs = [xs[0], w]
                if attrs["bias"]:
                    inputs.append(b.param(f"{n}.bias", arr.get("bias"), (fo,), "bias"))
                y = b.node("Gemm", inputs)
            elif len(in_shapes[0]) == 3:
                # A dense layer over the channels of a map is a 1x1 convolution.
                w = b.param(
                    f"{n}.weight",
                    None if kernel is None else kernel.T[:, :, None, None],
                    (fo, fin, 1, 1),
                    "weight",
                )
                inputs = [xs[0], w]
                if attrs["bias"]:
                    inputs.append(b.param(f"{n}.bias", arr.get("bias"), (fo,), "bias"))
                y = b.node("Conv", inputs, kernel_shape=[1, 1])
            else:  # pragma: no cover - the IR has no other shapes
                raise GraphError(f"node {n}: dense over shape {in_shapes[0]} cannot be exported")
        elif op == "batch_norm":
            arr = _layer_arrays(model, n)
            c = in_shapes[0][-1]
            if attrs["affine"]:
                scale = b.param(f"{n}.scale", arr.get("scale"), (c,), "scale")
                bias = b.param(f"{n}.bias", arr.get("bias"), (c,), "bias")
            else:  # constants, not parameters
                scale = b.const(f"{n}.ones", np.ones(c, np.float32))
                bias = b.const(f"{n}.zeros", np.zeros(c, np.float32))
            y = b.node(
                "BatchNormalization",
                [
                    xs[0],
                    scale,
                    bias,
                    b.param(f"{n}.mean", arr.get("mean"), (c,), "mean"),
                    b.param(f"{n}.var", arr.get("var"), (c,), "var"),
                ],
                epsilon=float(attrs["eps"]),
            )
        elif op == "relu":
            y = b.node("Relu", xs)
        elif op == "relu6":
            lo = b.const(f"{n}.min", np.array(0.0, np.float32))
            hi = b.const(f"{n}.max", np.array(6.0, np.float32))
            y = b.node("Clip", [xs[0], lo, hi])
        elif op == "sigmoid":
            y = b.node("Sigmoid", xs)
        elif op == "hsigmoid":
            y = b.node("HardSigmoid", xs, alpha=1.0 / 6.0, beta=0.5)
        elif op == "hswish":
            y = b.node("HardSwish", xs)
        elif op == "swish":
            s = b.node("Sigmoid", xs)
            y = b.node("Mul", [xs[0], s])
        elif op == "tanh":
            y = b.node("Tanh", xs)
        elif op == "gelu":
            # jax.nn.gelu defaults to the tanh approximation.
            y = b.node("Gelu", xs, approximate="tanh")
        elif op == "add":
            if len(xs) == 1:
                y = b.node("Identity", xs)
            elif len(xs) == 2:
                y = b.node("Add", xs)
            else:
                y = b.node("Sum", xs)
        elif op == "mul":
            y = b.node("Mul", xs)
        elif op == "concat":
            y = b.node("Concat", xs, axis=1)
        elif op in ("max_pool", "avg_pool"):
            kh, kw = _pair(attrs["kernel"], "kernel", n)
            t, bo, left, r = _padding(attrs["padding"], n)
            kw_attrs: dict[str, Any] = {
                "kernel_shape": [kh, kw],
                "strides": list(_pair(attrs["stride"], "stride", n)),
                "pads": [t, left, bo, r],
            }
            if op == "avg_pool":
                kw_attrs["count_include_pad"] = int(bool(attrs["count_include_pad"]))
                y = b.node("AveragePool", xs, **kw_attrs)
            else:
                y = b.node("MaxPool", xs, **kw_attrs)
        elif op == "global_pool":
            pooled = b.node("GlobalAveragePool" if attrs["mode"] == "avg" else "GlobalMaxPool", xs)
            y = pooled if attrs["keepdims"] else b.node("Flatten", [pooled], axis=1)
        elif op == "flatten":
            src = in_shapes[0]
            if len(src) == 3 and src[0] * src[1] > 1:
                # The IR flattens in (H, W, C) order: go back to NHWC first.
                xs = [b.node("Transpose", xs, perm=[0, 2, 3, 1])]
            y = b.node("Flatten", xs, axis=1)
        elif op in ("identity", "dropout"):
            y = b.node("Identity", xs)
        elif op == "zero":
            s = attrs["stride"]
            src = xs[0]
            if len(in_shapes[0]) == 3:
                # One channel of the (strided) input times zeros broadcast to the output.
                starts = b.const(f"{n}.starts", np.array([0, 0, 0], np.int64))
                ends = b.const(f"{n}.ends", np.array([1, 2**62, 2**62], np.int64))
                axes = b.const(f"{n}.axes", np.array([1, 2, 3], np.int64))
                steps = b.const(f"{n}.steps", np.array([1, s, s], np.int64))
                src = b.node("Slice", [src, starts, ends, axes, steps])
                zeros = b.const(f"{n}.zeros", np.zeros((1, out_shape[-1], 1, 1), np.float32))
            else:
                zeros = b.const(f"{n}.zeros", np.zeros((1, out_shape[-1]), np.float32))
            y = b.node("Mul", [src, zeros])
        elif op == "channel_shuffle":
            hh, ww, c = in_shapes[0]
            g_ = attrs["groups"]
            s1 = b.const(f"{n}.shape1", np.array([0, g_, c // g_, hh, ww], np.int64))
            s2 = b.const(f"{n}.shape2", np.array([0, c, hh, ww], np.int64))
            y = b.node("Reshape", [xs[0], s1])
            y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
            y = b.node("Reshape", [y, s2])
        elif op == "split":
            start, size = attrs["start"], attrs["size"]
            starts = b.const(f"{n}.starts", np.array([start], np.int64))
            ends = b.const(f"{n}.ends", np.array([start + size], np.int64))
            axes = b.const(f"{n}.axes", np.array([1], np.int64))
            y = b.node("Slice", [xs[0], starts, ends, axes])
        elif op == "pad":
            t, bo, left, r = (attrs[k] for k in ("top", "bottom", "left", "right"))
            pads = b.const(f"{n}.pads", np.array([0, 0, t, left, 0, 0, bo, r], np.int64))
            y = b.node("Pad", [xs[0], pads], mode="constant")
        elif op == "crop":
            hh, ww, _ = in_shapes[0]
            t, bo, left, r = (attrs[k] for k in ("top", "bottom", "left", "right"))
            starts = b.const(f"{n}.starts", np.array([t, left], np.int64))
            ends = b.const(f"{n}.ends", np.array([hh - bo, ww - r], np.int64))
            axes = b.const(f"{n}.axes", np.array([2, 3], np.int64))
            y = b.node("Slice", [xs[0], starts, ends, axes])
        else:  # pragma: no cover - the graph was validated against OPS
            raise GraphError(f"node {n}: op {op!r} has no ONNX mapping")
        vals[n] = y
    in_shape = graph.shape(graph.input)
    out_shape = graph.shape(graph.output)
    inputs = [h.make_tensor_value_info("input", TP.FLOAT, ["N", *in_shape])] + b.param_inputs
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
