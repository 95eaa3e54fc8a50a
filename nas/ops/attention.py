"""Transformer layers: layer and RMS norms, multi-head attention, the tied output layer.

A sequence is a per-sample ``(T, D)`` tensor (``[N, T, D]`` in flax, in ONNX and in
generated code); token ids are a ``(T,)`` int32 input. Attention is one parameter-free op
over its query, key and value inputs (``(T, H * d)``, ``(S, K * d)``, ``(S, K * d)``), so
the projections around it are ordinary ``dense`` nodes whose widths a search can change;
``kv_heads`` below ``heads`` is grouped-query attention.

Cost convention of these ops: attention counts its two matrix products (``Q K^T`` and
``softmax(.) V``, ``2 * T * S * H * d`` multiply-accumulates, the full ``T x S`` product
even when causal, as a dense kernel computes it) when the graph's convention has
``attention``; a tied output layer counts ``T * D * V`` like a dense layer; embedding
look-ups, norms and softmax count none.
"""

from __future__ import annotations

import math

import numpy as np

from nas.errors import GraphError
from nas.ops.base import (
    REQUIRED,
    Code,
    OpDef,
    call_layer,
    jax,
    need_sequence,
    nnx,
    positive_int,
    same,
)

# ----------------------------------------------------------------------------- norms


def _norm_layer(node, rngs, init):
    a, d = node.attrs, node.in_shape[-1]
    if node.op == "rms_norm":
        return nnx.RMSNorm(d, epsilon=a["eps"], use_fast_variance=False, rngs=rngs, **init)
    return nnx.LayerNorm(
        d, epsilon=a["eps"], use_bias=a["bias"], use_fast_variance=False, rngs=rngs, **init
    )


def _norm_code(node, xs):
    a, d = node.attrs, node.in_shape[-1]
    if node.op == "rms_norm":
        init = f"nnx.RMSNorm({d}, epsilon={a['eps']!r}, use_fast_variance=False, rngs=rngs)"
    else:
        init = (
            f"nnx.LayerNorm({d}, epsilon={a['eps']!r}, use_bias={a['bias']}, "
            "use_fast_variance=False, rngs=rngs)"
        )
    return Code(f"self.l{node.id}({xs[0]})", init)


def _norm_onnx(b, node, xs):
    """Normalise over the features: the last axis, or the channels of an NCHW map."""
    a, n, d = node.attrs, node.id, node.in_shape[-1]
    x = xs[0]
    is_map = len(node.in_shape) == 3
    if is_map:
        x = b.node("Transpose", [x], perm=[0, 2, 3, 1])
    scale = b.weight(node, "scale", "scale", (d,), "scale")
    if node.op == "layer_norm":
        inputs = [x, scale]
        if a["bias"]:
            inputs.append(b.weight(node, "bias", "bias", (d,), "bias"))
        y = b.node("LayerNormalization", inputs, axis=-1, epsilon=float(a["eps"]))
    else:
        axes = b.const(f"{n}.axes", np.array([-1], np.int64))
        ms = b.node("ReduceMean", [b.node("Mul", [x, x]), axes], keepdims=1)
        eps = b.const(f"{n}.eps", np.array(a["eps"], np.float32))
        y = b.node("Mul", [b.node("Div", [x, b.node("Sqrt", [b.node("Add", [ms, eps])])]), scale])
    return b.node("Transpose", [y], perm=[0, 3, 1, 2]) if is_map else y


def _norm(name: str, defaults: dict, params, keeps_zero, weights, label: str) -> OpDef:
    return OpDef(
        name,
        1,
        defaults,
        same,
        params,
        keeps_zero=keeps_zero,
        weights=weights,
        layer=_norm_layer,
        apply=call_layer,
        onnx=_norm_onnx,
        code=_norm_code,
        feature="layer_norm",
        fuse="bn",
        label=lambda node: label,
        colour="#e9edc9",
    )


# LayerNorm over the last axis; LN(0) is its bias, so it keeps zero only without one.
LAYER_NORM = _norm(
    "layer_norm",
    {"eps": 1e-5, "bias": True},
    lambda attrs, ins, out: out[-1] * (2 if attrs["bias"] else 1),
    lambda attrs: not attrs["bias"],
    ("scale", "bias"),
    "LN",
)
RMS_NORM = _norm(
    "rms_norm", {"eps": 1e-6}, lambda attrs, ins, out: out[-1], True, ("scale",), "RMSNorm"
)

# ----------------------------------------------------------------------------- attention


def attention(q, k, v, heads: int, kv_heads: int, causal: bool):
    """Multi-head scaled dot-product attention of ``[N, T, H*d]`` queries over ``[N, S, K*d]``
    keys and values; softmax(q k^T / sqrt(d)) v per head, K key/value heads shared by H/K
    query heads each."""
    b, t, width = q.shape
    s = k.shape[1]
    d = width // heads
    y = jax.nn.dot_product_attention(
        q.reshape(b, t, heads, d),
        k.reshape(b, s, kv_heads, d),
        v.reshape(b, s, kv_heads, d),
        is_causal=causal,
    )
    return y.reshape(b, t, width)


def _infer_attention(attrs, ins, node):
    (t, dq), (s, dk), (sv, dv) = (need_sequence(x, node, "attention") for x in ins)
    h = positive_int(attrs, "heads", node)
    kv = attrs["kv_heads"] or h
    if not isinstance(kv, int) or kv <= 0 or h % kv:
        raise GraphError(f"node {node!r}: kv_heads={kv!r} must divide heads={h}")
    if dq % h:
        raise GraphError(f"node {node!r}: query width {dq} does not split into {h} heads")
    if (s, dk) != (sv, dv) or dk != kv * (dq // h):
        raise GraphError(
            f"node {node!r}: keys {ins[1]} and values {ins[2]} must both be "
            f"(S, {kv} x {dq // h}) for queries {ins[0]} in {h} heads"
        )
    if attrs["causal"] and s != t:
        raise GraphError(f"node {node!r}: causal attention needs as many keys as queries")
    return (t, dq)


def _attention_macs(attrs, ins, out, conv):
    if not getattr(conv, "attention", True):
        return 0
    (t, dq), (s, _) = ins[0], ins[1]
    return 2 * t * s * dq  # Q K^T and P V: each T x S x (H * d)


def _heads(node):
    a = node.attrs
    return a["heads"], a["kv_heads"] or a["heads"], node.in_shape[-1] // a["heads"]


def _attention_onnx(b, node, xs):
    h, kv, d = _heads(node)
    n, t, s = node.id, node.in_shapes[0][0], node.in_shapes[1][0]

    def split(x, count, length):  # [N, L, count * d] -> [N, count, L, d]
        shape = b.const(f"{n}.split", np.array([0, length, count, d], np.int64))
        return b.node("Transpose", [b.node("Reshape", [x, shape])], perm=[0, 2, 1, 3])

    q, k, v = split(xs[0], h, t), split(xs[1], kv, s), split(xs[2], kv, s)
    if kv < h:  # grouped-query: each key/value head serves h / kv query heads

        def repeat(x):
            y = b.node("Unsqueeze", [x, b.const(f"{n}.axis", np.array([2], np.int64))])
            y = b.node(
                "Expand", [y, b.const(f"{n}.groups", np.array([1, kv, h // kv, s, d], np.int64))]
            )
            return b.node("Reshape", [y, b.const(f"{n}.merge", np.array([0, h, s, d], np.int64))])

        k, v = repeat(k), repeat(v)
    scores = b.node("MatMul", [q, b.node("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = b.node(
        "Mul", [scores, b.const(f"{n}.inv_sqrt_d", np.array(1 / math.sqrt(d), np.float32))]
    )
    if node.attrs["causal"]:
        mask = b.const(f"{n}.causal", np.tril(np.ones((t, s), bool)))
        low = b.const(f"{n}.masked", np.array(np.finfo(np.float32).min, np.float32))
        scores = b.node("Where", [mask, scores, low])
    y = b.node("MatMul", [b.node("Softmax", [scores], axis=-1), v])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3])
    return b.node("Reshape", [y, b.const(f"{n}.merged", np.array([0, t, h * d], np.int64))])


def _attention_code(node, xs):
    h, kv, _ = _heads(node)
    return Code(f"attention({', '.join(xs)}, {h}, {kv}, {node.attrs['causal']})")


ATTENTION = OpDef(
    "attention",
    3,
    {"heads": REQUIRED, "kv_heads": 0, "causal": False},
    _infer_attention,
    macs=_attention_macs,
    keeps_zero=True,
    apply=lambda node, xs, layers: attention(*xs, *_heads(node)[:2], node.attrs["causal"]),
    onnx=_attention_onnx,
    code=_attention_code,
    code_helpers=(attention,),
    feature="attention",
    mixes_positions=True,
    label=lambda node: (
        f"attention h{node.attrs['heads']}" + (" causal" if node.attrs["causal"] else "")
    ),
    colour="#f4a261",
)

# ----------------------------------------------------------------------------- tied output


def _infer_unembed(attrs, ins, node, refs):
    op, ref_attrs, _ = refs["embedding"]
    if op != "embed":
        raise GraphError(f"node {node!r}: unembed must name an embed node, not a {op!r} node")
    if ins[0][-1] != ref_attrs["dim"]:
        raise GraphError(
            f"node {node!r}: {ins[0][-1]} features do not fit the embedding's {ref_attrs['dim']}"
        )
    return tuple(ins[0][:-1]) + (ref_attrs["vocab"],)


def _unembed_macs(attrs, ins, out, conv):
    return math.prod(out) * ins[0][-1] if conv.dense else 0


def _unembed_onnx(b, node, xs):
    table = b.weight_name(node.attrs["embedding"], "embedding")
    return b.node("MatMul", [xs[0], b.node("Transpose", [table], perm=[1, 0])])


# The output layer tied to an input embedding (GPT-2): logits = x E^T, no weights of its own.
UNEMBED = OpDef(
    "unembed",
    1,
    {"embedding": REQUIRED},
    _infer_unembed,
    macs=_unembed_macs,
    keeps_zero=True,
    refs=("embedding",),
    apply=lambda node, xs, layers: layers[str(node.attrs["embedding"])].attend(xs[0]),
    onnx=_unembed_onnx,
    code=lambda node, xs: Code(f"self.l{node.attrs['embedding']}.attend({xs[0]})"),
    feature="dense",
    host=True,
    label=lambda node: "unembed (tied)",
    colour="#8ecae6",
)

ATTENTION_OPS = (LAYER_NORM, RMS_NORM, ATTENTION, UNEMBED)
