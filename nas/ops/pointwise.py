"""Ops that act on every position alike: activations, dense layers and batch norm."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nas.errors import GraphError
from nas.ops.base import REQUIRED, Code, OpDef, call_layer, jax, jnp, nnx, same

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

POINTWISE_OPS = (*ACTIVATIONS, DENSE, BATCH_NORM)
