"""Ops of any tensor shape: graph borders, routing and merges."""

from __future__ import annotations

import math

import numpy as np

from nas.errors import GraphError
from nas.ops.base import REQUIRED, Code, OpDef, channel_axis, jnp, nnx, same

DTYPES = ("float32", "int32")
"""Element types of a graph input: images and features are float32, token ids int32."""

# ----------------------------------------------------------------------------- borders


def _infer_input(attrs, ins, node):
    shape = attrs["shape"]
    if not isinstance(shape, (list, tuple)) or not all(isinstance(x, int) and x > 0 for x in shape):
        raise GraphError(f"node {node!r}: input shape must be positive ints, got {shape!r}")
    if attrs["dtype"] not in DTYPES:
        raise GraphError(
            f"node {node!r}: input dtype must be one of {DTYPES}, got {attrs['dtype']!r}"
        )
    return tuple(shape)


def _input_onnx(b, node, xs):
    if len(node.shape) == 3:
        return b.node("Transpose", ["input"], perm=[0, 3, 1, 2])
    return b.node("Identity", ["input"])


def _output_onnx(b, node, xs):
    if len(node.shape) == 3:
        return b.node("Transpose", xs, out="output", perm=[0, 2, 3, 1])
    return b.node("Identity", xs, out="output")


def _forward(node, xs, layers):
    return xs[0]


def _forward_code(node, xs):
    return Code(xs[0])


def _identity_onnx(b, node, xs):
    return b.node("Identity", xs)


INPUT = OpDef(
    "input",
    0,
    {"shape": REQUIRED, "dtype": "float32"},
    _infer_input,
    min_inputs=0,
    apply=lambda node, xs, layers: xs[0],  # the model feeds the batch in as xs[0]
    onnx=_input_onnx,
    code=lambda node, xs: Code("x"),
    feature="input",
    host=True,
    colour="#bbbbbb",
)
OUTPUT = OpDef(
    "output",
    1,
    {},
    same,
    passthrough=True,
    keeps_zero=True,
    apply=_forward,
    onnx=_output_onnx,
    code=_forward_code,
    colour="#bbbbbb",
)
IDENTITY = OpDef(
    "identity",
    1,
    {},
    same,
    passthrough=True,
    keeps_zero=True,
    apply=_forward,
    onnx=_identity_onnx,
    code=_forward_code,
    colour="#eeeeee",
)


def _dropout_layer(node, rngs, init):
    return nnx.Dropout(node.attrs["rate"], rngs=rngs) if node.attrs["rate"] > 0 else None


def _dropout_code(node, xs):
    if node.attrs["rate"] > 0:
        return Code(f"self.l{node.id}({xs[0]})", f"nnx.Dropout({node.attrs['rate']!r}, rngs=rngs)")
    return Code(xs[0])


DROPOUT = OpDef(
    "dropout",
    1,
    {"rate": 0.0},
    same,
    passthrough=True,
    keeps_zero=True,
    layer=_dropout_layer,
    apply=lambda node, xs, layers: layers[str(node.id)](xs[0]) if node.attrs["rate"] > 0 else xs[0],
    onnx=_identity_onnx,
    code=_dropout_code,
)

# ----------------------------------------------------------------------------- merges


def _infer_add(attrs, ins, node):
    first = ins[0]
    for s in ins[1:]:
        if s != first:
            raise GraphError(f"node {node!r}: inputs must have equal shapes, got {ins}")
    return first


def _add_apply(node, xs, layers):
    y = xs[0]
    for other in xs[1:]:
        y = y + other
    return y


def _add_onnx(b, node, xs):
    if len(xs) == 1:
        return b.node("Identity", xs)
    return b.node("Add" if len(xs) == 2 else "Sum", xs)


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
    lead = ins[0][:-1]
    for s in ins[1:]:
        if s[:-1] != lead:
            raise GraphError(f"node {node!r}: concat inputs differ outside channels: {ins}")
    return tuple(lead) + (sum(s[-1] for s in ins),)


ADD = OpDef(
    "add",
    None,
    {},
    _infer_add,
    keeps_zero=True,
    commutative=True,
    apply=_add_apply,
    onnx=_add_onnx,
    code=lambda node, xs: Code(" + ".join(xs)),
    feature="add",
    host=True,
    colour="#ffb703",
)
MUL = OpDef(
    "mul",
    2,
    {},
    _infer_mul,
    keeps_zero=True,
    zero_if_any=True,
    commutative=True,
    apply=lambda node, xs, layers: xs[0] * xs[1],
    onnx=lambda b, node, xs: b.node("Mul", xs),
    code=lambda node, xs: Code(f"{xs[0]} * {xs[1]}"),
    feature="mul",
    host=True,
    colour="#ffb703",
)
CONCAT = OpDef(
    "concat",
    None,
    {},
    _infer_concat,
    keeps_zero=True,
    apply=lambda node, xs, layers: jnp.concatenate(xs, axis=-1),
    onnx=lambda b, node, xs: b.node("Concat", xs, axis=channel_axis(node.shape)),
    code=lambda node, xs: Code(f"jnp.concatenate([{', '.join(xs)}], axis=-1)"),
    feature="concat",
    host=True,
    colour="#ffb703",
)

# ----------------------------------------------------------------------------- routing


def _infer_split(attrs, ins, node):
    s = ins[0]
    start, size = attrs["start"], attrs["size"]
    if start < 0 or size <= 0 or start + size > s[-1]:
        raise GraphError(
            f"node {node!r}: channel slice [{start}, {start + size}) outside {s[-1]} channels"
        )
    return tuple(s[:-1]) + (size,)


def _split_onnx(b, node, xs):
    start, size = node.attrs["start"], node.attrs["size"]
    n = node.id
    starts = b.const(f"{n}.starts", np.array([start], np.int64))
    ends = b.const(f"{n}.ends", np.array([start + size], np.int64))
    axes = b.const(f"{n}.axes", np.array([channel_axis(node.shape)], np.int64))
    return b.node("Slice", [xs[0], starts, ends, axes])


SPLIT = OpDef(
    "split",
    1,
    {"start": REQUIRED, "size": REQUIRED},
    _infer_split,
    keeps_zero=True,
    apply=lambda node, xs, layers: xs[0][
        ..., node.attrs["start"] : node.attrs["start"] + node.attrs["size"]
    ],
    onnx=_split_onnx,
    code=lambda node, xs: Code(
        f"{xs[0]}[..., {node.attrs['start']}:{node.attrs['start'] + node.attrs['size']}]"
    ),
)


def _flatten_onnx(b, node, xs):
    src = node.in_shape
    if len(src) == 3 and src[0] * src[1] > 1:
        # The IR flattens in (H, W, C) order: go back to NHWC first.
        xs = [b.node("Transpose", xs, perm=[0, 2, 3, 1])]
    return b.node("Flatten", xs, axis=1)


FLATTEN = OpDef(
    "flatten",
    1,
    {},
    lambda attrs, ins, node: (math.prod(ins[0]),),
    keeps_zero=True,
    apply=lambda node, xs, layers: xs[0].reshape(xs[0].shape[0], -1),
    onnx=_flatten_onnx,
    code=lambda node, xs: Code(f"{xs[0]}.reshape({xs[0]}.shape[0], -1)"),
)


def _infer_zero(attrs, ins, node):
    s = ins[0]
    stride = attrs["stride"]
    cout = attrs["out_channels"] or s[-1]
    if len(s) == 3:
        return (-(-s[0] // stride), -(-s[1] // stride), cout)
    return s


def _zero_apply(node, xs, layers):
    src = xs[0]
    if src.ndim == 4:
        return jnp.zeros((src.shape[0], *node.shape), src.dtype)
    return jnp.zeros_like(src)


def _zero_onnx(b, node, xs):
    n, src = node.id, xs[0]
    if len(node.in_shape) == 3:
        # One channel of the (strided) input times zeros broadcast to the output.
        s = node.attrs["stride"]
        starts = b.const(f"{n}.starts", np.array([0, 0, 0], np.int64))
        ends = b.const(f"{n}.ends", np.array([1, 2**62, 2**62], np.int64))
        axes = b.const(f"{n}.axes", np.array([1, 2, 3], np.int64))
        steps = b.const(f"{n}.steps", np.array([1, s, s], np.int64))
        src = b.node("Slice", [src, starts, ends, axes, steps])
        zeros = b.const(f"{n}.zeros", np.zeros((1, node.shape[-1], 1, 1), np.float32))
    else:
        zeros = b.const(f"{n}.zeros", np.zeros((1, node.shape[-1]), np.float32))
    return b.node("Mul", [src, zeros])


def _zero_code(node, xs):
    if len(node.shape) == 3:
        oh, ow, c = node.shape
        return Code(f"jnp.zeros(({xs[0]}.shape[0], {oh}, {ow}, {c}), {xs[0]}.dtype)")
    return Code(f"jnp.zeros_like({xs[0]})")


ZERO = OpDef(
    "zero",
    1,
    {"stride": 1, "out_channels": 0},
    _infer_zero,
    keeps_zero=True,
    apply=_zero_apply,
    onnx=_zero_onnx,
    code=_zero_code,
    colour="#eeeeee",
)

CORE_OPS = (
    INPUT,
    OUTPUT,
    IDENTITY,
    DROPOUT,
    ADD,
    MUL,
    CONCAT,
    SPLIT,
    FLATTEN,
    ZERO,
)
