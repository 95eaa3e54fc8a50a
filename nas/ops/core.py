"""Ops of any tensor shape: graph borders, routing, merges, activations, dense and batch norm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nas.errors import GraphError
from nas.ops.base import REQUIRED, Code, OpDef, call_layer, channel_axis, jax, jnp, nnx, same

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

# ----------------------------------------------------------------------------- activations


def _relu6_onnx(b, node, xs):
    lo = b.const(f"{node.id}.min", np.array(0.0, np.float32))
    hi = b.const(f"{node.id}.max", np.array(6.0, np.float32))
    return b.node("Clip", [xs[0], lo, hi])


def _swish_onnx(b, node, xs):
    return b.node("Mul", [xs[0], b.node("Sigmoid", xs)])


def _gelu_onnx(b, node, xs):
    return b.node("Gelu", xs, approximate="tanh" if node.attrs["approximate"] else "none")


def _activation(
    name: str, fn, onnx, code: str, keeps_zero: bool, gate: bool = False, **defaults: Any
) -> OpDef:
    """An elementwise activation; ``code`` is a format string over ``{x}`` and the attrs."""
    return OpDef(
        name,
        1,
        defaults,
        same,
        keeps_zero=keeps_zero,
        apply=lambda node, xs, layers: fn(xs[0], **node.attrs),
        onnx=onnx,
        code=lambda node, xs: Code(code.format(x=xs[0], **node.attrs)),
        feature="gate" if gate else "act",
        fuse="gate" if gate else "act",
    )


ACTIVATIONS = (
    _activation(
        "relu",
        lambda x: jax.nn.relu(x),
        lambda b, node, xs: b.node("Relu", xs),
        "jax.nn.relu({x})",
        True,
    ),
    _activation("relu6", lambda x: jax.nn.relu6(x), _relu6_onnx, "jax.nn.relu6({x})", True),
    _activation(
        "sigmoid",
        lambda x: jax.nn.sigmoid(x),
        lambda b, node, xs: b.node("Sigmoid", xs),
        "jax.nn.sigmoid({x})",
        False,
        gate=True,
    ),
    _activation(
        "hsigmoid",
        lambda x: jax.nn.relu6(x + 3.0) / 6.0,
        lambda b, node, xs: b.node("HardSigmoid", xs, alpha=1.0 / 6.0, beta=0.5),
        "jax.nn.relu6({x} + 3.0) / 6.0",
        False,
        gate=True,
    ),
    _activation(
        "hswish",
        lambda x: x * jax.nn.relu6(x + 3.0) / 6.0,
        lambda b, node, xs: b.node("HardSwish", xs),
        "{x} * jax.nn.relu6({x} + 3.0) / 6.0",
        True,
    ),
    # swish is SiLU: x * sigmoid(x).
    _activation("swish", lambda x: jax.nn.silu(x), _swish_onnx, "jax.nn.silu({x})", True),
    _activation(
        "tanh",
        lambda x: jnp.tanh(x),
        lambda b, node, xs: b.node("Tanh", xs),
        "jnp.tanh({x})",
        True,
    ),
    # GELU: the tanh approximation by default (jax's default, GPT-2's ``gelu_new``);
    # ``approximate=False`` is the exact erf form (BERT, ViT).
    _activation(
        "gelu",
        lambda x, approximate: jax.nn.gelu(x, approximate=approximate),
        _gelu_onnx,
        "jax.nn.gelu({x}, approximate={approximate})",
        True,
        approximate=True,
    ),
)

# ----------------------------------------------------------------------------- dense


def _infer_dense(attrs, ins, node):
    fo = attrs["out_features"]
    if not isinstance(fo, int) or fo <= 0:
        raise GraphError(f"node {node!r}: out_features must be a positive int, got {fo!r}")
    return tuple(ins[0][:-1]) + (fo,)


def _dense_params(attrs, ins, out):
    return ins[0][-1] * out[-1] + (out[-1] if attrs["bias"] else 0)


def _dense_macs(attrs, ins, out, conv):
    if not conv.dense:
        return 0
    lead = math.prod(out[:-1])
    n = lead * ins[0][-1] * out[-1]
    if attrs["bias"] and conv.dense_bias:
        n += lead * out[-1]
    return n


def _dense_layer(node, rngs, init):
    return nnx.Linear(
        node.in_shape[-1],
        node.attrs["out_features"],
        use_bias=node.attrs["bias"],
        rngs=rngs,
        **init,
    )


def _dense_onnx(b, node, xs):
    fin, fo = node.in_shape[-1], node.attrs["out_features"]
    if len(node.in_shape) == 3:
        # A dense layer over the channels of a map is a 1x1 convolution.
        w = b.weight(
            node, "kernel", "weight", (fo, fin, 1, 1), "weight", lambda k: k.T[:, :, None, None]
        )
        inputs = [xs[0], w]
        if node.attrs["bias"]:
            inputs.append(b.weight(node, "bias", "bias", (fo,), "bias"))
        return b.node("Conv", inputs, kernel_shape=[1, 1])
    w = b.weight(node, "kernel", "weight", (fin, fo), "weight")
    if len(node.in_shape) == 1:
        inputs = [xs[0], w]
        if node.attrs["bias"]:
            inputs.append(b.weight(node, "bias", "bias", (fo,), "bias"))
        return b.node("Gemm", inputs)
    y = b.node("MatMul", [xs[0], w])  # a sequence: [N, T, fin] @ [fin, fo]
    if node.attrs["bias"]:
        y = b.node("Add", [y, b.weight(node, "bias", "bias", (fo,), "bias")])
    return y


def _dense_code(node, xs):
    a = node.attrs
    return Code(
        f"self.l{node.id}({xs[0]})",
        f"nnx.Linear({node.in_shape[-1]}, {a['out_features']}, use_bias={a['bias']}, rngs=rngs)",
    )


DENSE = OpDef(
    "dense",
    1,
    {"out_features": REQUIRED, "bias": True},
    _infer_dense,
    _dense_params,
    _dense_macs,
    keeps_zero=lambda attrs: not attrs["bias"],
    weights=("kernel", "bias"),
    layer=_dense_layer,
    apply=call_layer,
    onnx=_dense_onnx,
    code=_dense_code,
    feature="dense",
    host=True,
    label=lambda node: f"dense {node.attrs['out_features']}",
    colour="#8ecae6",
)

# ----------------------------------------------------------------------------- batch norm


def _bn_layer(node, rngs, init):
    a = node.attrs
    return nnx.BatchNorm(
        node.in_shape[-1],
        use_scale=a["affine"],
        use_bias=a["affine"],
        epsilon=a["eps"],
        momentum=1.0 - a["momentum"],
        rngs=rngs,
        **init,
    )


def _bn_onnx(b, node, xs):
    n, c = node.id, node.in_shape[-1]
    if node.attrs["affine"]:
        scale = b.weight(node, "scale", "scale", (c,), "scale")
        bias = b.weight(node, "bias", "bias", (c,), "bias")
    else:  # constants, not parameters
        scale = b.const(f"{n}.ones", np.ones(c, np.float32))
        bias = b.const(f"{n}.zeros", np.zeros(c, np.float32))
    mean = b.weight(node, "mean", "mean", (c,), "mean")
    var = b.weight(node, "var", "var", (c,), "var")
    return b.node(
        "BatchNormalization", [xs[0], scale, bias, mean, var], epsilon=float(node.attrs["eps"])
    )


def _bn_code(node, xs):
    a = node.attrs
    return Code(
        f"self.l{node.id}({xs[0]})",
        f"nnx.BatchNorm({node.in_shape[-1]}, use_scale={a['affine']}, use_bias={a['affine']}, "
        f"epsilon={a['eps']!r}, momentum={1.0 - a['momentum']!r}, rngs=rngs)",
    )


BATCH_NORM = OpDef(
    "batch_norm",
    1,
    {"affine": True, "eps": 1e-5, "momentum": 0.1},
    same,
    lambda attrs, ins, out: 2 * out[-1] if attrs["affine"] else 0,
    # In evaluation mode a batch norm maps zero to a learned constant; the IR treats zero
    # branches as absent, so a normalised zero branch stays absent (as the hash always did).
    keeps_zero=True,
    weights=("scale", "bias"),
    stats=("mean", "var"),
    layer=_bn_layer,
    apply=call_layer,
    onnx=_bn_onnx,
    code=_bn_code,
    feature="batch_norm",
    fuse="bn",
    label=lambda node: "BN",
    colour="#e9edc9",
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
    *ACTIVATIONS,
    DENSE,
    BATCH_NORM,
)
