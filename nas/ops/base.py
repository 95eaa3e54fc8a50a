"""The shape of one operation definition, and what every definition shares.

An :class:`OpDef` holds everything the platform knows about one op of the IR: its
attributes, shape inference, cost, its semantics for graph reduction (whether an all-zero
input gives an all-zero output, whether it forwards its input unchanged) and its lowerings
-- to a flax.nnx layer and forward, to ONNX nodes, to standalone source code, to a
predictor feature category and to a diagram label. Backends (:mod:`nas.model`,
:mod:`nas.onnx_export`, :mod:`nas.codegen`, :mod:`nas.draw`, ``nas.predictors.features``)
interpret the graph by asking each node's definition; none of them switches on op names.

Lowerings see a node through :class:`Node` (id, op, attributes with defaults, input and
output shapes, scope). Heavy libraries (jax, flax) are imported on first use through
:data:`jax`, :data:`jnp` and :data:`nnx`, so that importing the IR stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nas.errors import GraphError

Shape = tuple[int, ...]
REQUIRED = ...
"""The default of an attribute that every node must give."""


class _Lazy:
    """A module imported on first attribute access (keeps ``import nas.graph`` light)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


jax = _Lazy("jax")
jnp = _Lazy("jax.numpy")
nnx = _Lazy("flax.nnx")


@dataclass(frozen=True, eq=False)
class Node:
    """One node as the lowerings see it.

    Attributes:
        id: the node id in the graph.
        op: the op type.
        attrs: the attributes, defaults filled in.
        in_shapes: the inputs' shapes, in order (per sample, no batch axis).
        shape: the output shape (per sample).
        scope: the block the node belongs to (``""`` when none).
    """

    id: int
    op: str
    attrs: Mapping[str, Any]
    in_shapes: tuple[Shape, ...]
    shape: Shape
    scope: str = ""

    @property
    def in_shape(self) -> Shape:
        """The first input's shape."""
        return self.in_shapes[0]


@dataclass(frozen=True)
class Code:
    """A node as standalone flax source: an optional ``__init__`` statement creating its
    layer (``self.l<id> = ...``) and the expression computing its value."""

    expr: str
    init: str | None = None


def _zero_params(attrs, ins, out) -> int:
    return 0


def _zero_macs(attrs, ins, out, convention) -> int:
    return 0


def _no_layer(node: Node, rngs: Any, init: Mapping[str, Any]) -> Any:
    return None


def _unsupported(what: str) -> Callable[..., Any]:
    def fail(node: Node, *args: Any) -> Any:  # pragma: no cover - every op defines it
        raise GraphError(f"node {node.id}: op {node.op!r} has no {what} lowering")

    return fail


@dataclass(frozen=True)
class OpDef:
    """Everything about one op of the IR, in one place.

    Attributes:
        name: the op type.
        arity: number of inputs (``None``: variadic, at least ``min_inputs``).
        defaults: every accepted attribute with its default (:data:`REQUIRED` if none).
        infer: ``(attrs, input_shapes, node_id) -> output shape``; raises
            :class:`~nas.errors.GraphError` naming the node when the inputs do not fit.
            Ops with ``refs`` get a fourth argument: ref attribute -> ``(op, attrs, shape)``
            of the node it names.
        params: ``(attrs, input_shapes, output_shape) -> trainable parameters``.
        macs: ``(attrs, input_shapes, output_shape, convention) -> multiply-accumulates``.
        keeps_zero: whether all-zero inputs give an all-zero output (a bool, or a function
            of the attributes: a conv keeps zero only without bias).
        zero_if_any: one all-zero input is enough for an all-zero output (``mul``).
        passthrough: the op forwards its single input unchanged (identity, dropout,
            output); graph reductions skip it.
        commutative: inputs may be reordered without changing the result.
        min_inputs: the least number of inputs of a variadic op.
        weights: the node's trainable arrays, by their flax variable names (also the
            ``<name>_init`` arguments of its layer); non-empty means "parametric".
        stats: non-trainable arrays of its layer (batch-norm running statistics).
        refs: attributes that name another node (a tied output layer names its embedding).
        layer: flax lowering, ``(node, rngs, inits) -> nnx.Module | None``.
        apply: flax forward, ``(node, inputs, layers) -> output`` (``layers`` maps node ids
            as strings to the model's layers; batch axis first).
        onnx: ``(builder, node, input names) -> output name`` (NCHW maps, see
            :mod:`nas.onnx_export`).
        code: ``(node, input expressions) -> Code`` for :mod:`nas.codegen`.
        code_helpers: source of helper functions the generated code calls.
        feature: the predictor's node category, or ``node -> category``.
        fuse: the predictor's fusion role: ``act``, ``gate``, ``bn`` (a norm) or ``""``.
        host: the predictor may fuse a following norm or activation into this node.
        mixes_positions: the op combines values from several spatial positions or tokens
            (a spatial conv, a pool, attention): it deepens the receptive field.
        label: the diagram label, ``node -> str`` (default: the op name).
        colour: the diagram colour.
    """

    name: str
    arity: int | None
    defaults: Mapping[str, Any]
    infer: Callable[..., Shape]
    params: Callable[[dict, list[Shape], Shape], int] = _zero_params
    macs: Callable[[dict, list[Shape], Shape, Any], int] = _zero_macs
    keeps_zero: bool | Callable[[Mapping[str, Any]], bool] = False
    zero_if_any: bool = False
    passthrough: bool = False
    commutative: bool = False
    min_inputs: int = 1
    weights: tuple[str, ...] = ()
    stats: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()
    layer: Callable[[Node, Any, Mapping[str, Any]], Any] = _no_layer
    apply: Callable[[Node, list[Any], Any], Any] = field(default=_unsupported("flax"))
    onnx: Callable[[Any, Node, list[str]], str] = field(default=_unsupported("ONNX"))
    code: Callable[[Node, list[str]], Code] = field(default=_unsupported("source"))
    code_helpers: tuple[str, ...] = ()
    feature: str | Callable[[Node], str] = "other"
    fuse: str = ""
    host: bool = False
    mixes_positions: bool | Callable[[Node], bool] = False
    label: Callable[[Node], str] | None = None
    colour: str = "#ffffff"

    @property
    def parametric(self) -> bool:
        """Whether the op owns trainable arrays."""
        return bool(self.weights)

    def zero_preserving(self, attrs: Mapping[str, Any]) -> bool:
        """Whether all-zero inputs give an all-zero output for these attributes."""
        return self.keeps_zero(attrs) if callable(self.keeps_zero) else bool(self.keeps_zero)

    def category(self, node: Node) -> str:
        """The predictor feature category of ``node``."""
        return self.feature(node) if callable(self.feature) else self.feature

    def mixes(self, node: Node) -> bool:
        """Whether ``node`` combines several positions (see ``mixes_positions``)."""
        m = self.mixes_positions
        return bool(m(node)) if callable(m) else bool(m)

    def describe(self, node: Node) -> str:
        """The diagram label of ``node``."""
        return self.label(node) if self.label is not None else self.name


# --------------------------------------------------------------------------------------
# Helpers shared by the definitions
# --------------------------------------------------------------------------------------


def pair(v: Any, name: str, node: Any) -> tuple[int, int]:
    """An int or a pair of ints as a pair."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return (int(v[0]), int(v[1]))
    raise GraphError(f"node {node!r}: {name} must be an int or a pair of ints, got {v!r}")


def padding(v: Any, node: Any) -> tuple[int, int, int, int]:
    """Padding as (top, bottom, left, right)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v, v, v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v):
        if len(v) == 2:
            return (v[0], v[0], v[1], v[1])
        if len(v) == 4:
            return tuple(int(x) for x in v)  # type: ignore[return-value]
    raise GraphError(f"node {node!r}: padding must be an int, [h, w] or [t, b, l, r], got {v!r}")


def need_map(shape: Shape, node: Any, op: str) -> tuple[int, int, int]:
    """``shape`` as an (H, W, C) feature map, or an error naming the node."""
    if len(shape) != 3:
        raise GraphError(f"node {node!r}: {op} needs an (H, W, C) feature map, got shape {shape}")
    return shape  # type: ignore[return-value]


def need_sequence(shape: Shape, node: Any, op: str) -> tuple[int, int]:
    """``shape`` as a (T, D) sequence of vectors, or an error naming the node."""
    if len(shape) != 2:
        raise GraphError(f"node {node!r}: {op} needs a (T, D) sequence, got shape {shape}")
    return shape  # type: ignore[return-value]


def positive_int(attrs: Mapping[str, Any], key: str, node: Any) -> int:
    v = attrs[key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise GraphError(f"node {node!r}: {key} must be a positive int, got {v!r}")
    return v


def call_layer(node: Node, xs: list[Any], layers: Any) -> Any:
    """The flax forward of an op that owns one layer: the layer applied to the input."""
    return layers[str(node.id)](xs[0])


def same(attrs, ins, node) -> Shape:
    """Shape inference of ops that keep their input's shape."""
    return ins[0]


def channel_axis(shape: Shape) -> int:
    """The feature axis of a per-sample ``shape`` in the ONNX layout (batch first; maps are
    NCHW, so their channels are axis 1; sequences and vectors keep features last)."""
    return 1 if len(shape) == 3 else len(shape)
