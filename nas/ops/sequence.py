"""Ops of token sequences: embeddings, the class token and reshapes between maps and tokens.

A sequence is a per-sample ``(T, D)`` tensor (``[N, T, D]`` in flax, in ONNX and in
generated code); token ids are a ``(T,)`` int32 input. Embedding look-ups count no
multiply-accumulates.
"""

from __future__ import annotations

import numpy as np

from nas.errors import GraphError
from nas.ops.base import (
    REQUIRED,
    Code,
    OpDef,
    jnp,
    need_map,
    need_sequence,
    nnx,
    positive_int,
)

# ----------------------------------------------------------------------------- embeddings


def _infer_embed(attrs, ins, node):
    if len(ins[0]) != 1:
        raise GraphError(f"node {node!r}: embed reads a (T,) sequence of token ids, got {ins[0]}")
    positive_int(attrs, "vocab", node)
    return (ins[0][0], positive_int(attrs, "dim", node))


def _embed_layer(node, rngs, init):
    return nnx.Embed(node.attrs["vocab"], node.attrs["dim"], rngs=rngs, **init)


def _embed_onnx(b, node, xs):
    a = node.attrs
    w = b.weight(node, "embedding", "weight", (a["vocab"], a["dim"]), "weight")
    return b.node("Gather", [w, xs[0]], axis=0)


EMBED = OpDef(
    "embed",
    1,
    {"vocab": REQUIRED, "dim": REQUIRED},
    _infer_embed,
    lambda attrs, ins, out: attrs["vocab"] * attrs["dim"],
    weights=("embedding",),
    layer=_embed_layer,
    apply=lambda node, xs, layers: layers[str(node.id)](xs[0].astype(jnp.int32)),
    onnx=_embed_onnx,
    code=lambda node, xs: Code(
        f"self.l{node.id}({xs[0]}.astype(jnp.int32))",
        f"nnx.Embed({node.attrs['vocab']}, {node.attrs['dim']}, rngs=rngs)",
    ),
    feature="embed",
    label=lambda node: f"embed {node.attrs['vocab']}x{node.attrs['dim']}",
    colour="#90be6d",
)


def _table(rows_key: str | None):
    """A learned table of ``rows x D`` added to (or put in front of) a sequence."""

    def layer(node, rngs, init):
        rows = node.attrs[rows_key] if rows_key else 1
        return nnx.Embed(rows, node.in_shape[-1], rngs=rngs, **init)

    def params(attrs, ins, out):
        return (attrs[rows_key] if rows_key else 1) * ins[0][-1]

    return layer, params


def _infer_pos(attrs, ins, node):
    t, _ = need_sequence(ins[0], node, "pos_embed")
    if t > positive_int(attrs, "max_len", node):
        raise GraphError(
            f"node {node!r}: {t} positions exceed the table's max_len {attrs['max_len']}"
        )
    return ins[0]


def _pos_onnx(b, node, xs):
    t, d = node.in_shape
    n = node.id
    w = b.weight(node, "embedding", "weight", (node.attrs["max_len"], d), "weight")
    rows = b.node(
        "Slice",
        [
            w,
            b.const(f"{n}.starts", np.array([0], np.int64)),
            b.const(f"{n}.ends", np.array([t], np.int64)),
            b.const(f"{n}.axes", np.array([0], np.int64)),
        ],
    )
    return b.node("Add", [xs[0], rows])


_pos_layer, _pos_params = _table("max_len")
POS_EMBED = OpDef(
    "pos_embed",
    1,
    {"max_len": REQUIRED},
    _infer_pos,
    _pos_params,
    weights=("embedding",),
    layer=_pos_layer,
    apply=lambda node, xs, layers: xs[0] + layers[str(node.id)].embedding[: node.in_shape[0]],
    onnx=_pos_onnx,
    code=lambda node, xs: Code(
        f"{xs[0]} + self.l{node.id}.embedding[:{node.in_shape[0]}]",
        f"nnx.Embed({node.attrs['max_len']}, {node.in_shape[-1]}, rngs=rngs)",
    ),
    feature="embed",
    label=lambda node: f"positions {node.attrs['max_len']}",
    colour="#90be6d",
)


def _infer_segment(attrs, ins, node):
    need_sequence(ins[0], node, "segment_embed")
    positive_int(attrs, "segments", node)
    return ins[0]


def _segment_onnx(b, node, xs):
    n, d = node.id, node.in_shape[-1]
    w = b.weight(node, "embedding", "weight", (node.attrs["segments"], d), "weight")
    row = b.node(
        "Slice",
        [
            w,
            b.const(f"{n}.starts", np.array([0], np.int64)),
            b.const(f"{n}.ends", np.array([1], np.int64)),
            b.const(f"{n}.axes", np.array([0], np.int64)),
        ],
    )
    return b.node("Add", [xs[0], row])


_segment_layer, _segment_params = _table("segments")
# BERT's token-type embedding. The graph has one input, so every token is in segment 0;
# the whole table is trainable and counted.
SEGMENT_EMBED = OpDef(
    "segment_embed",
    1,
    {"segments": 2},
    _infer_segment,
    _segment_params,
    weights=("embedding",),
    layer=_segment_layer,
    apply=lambda node, xs, layers: xs[0] + layers[str(node.id)].embedding[0],
    onnx=_segment_onnx,
    code=lambda node, xs: Code(
        f"{xs[0]} + self.l{node.id}.embedding[0]",
        f"nnx.Embed({node.attrs['segments']}, {node.in_shape[-1]}, rngs=rngs)",
    ),
    feature="embed",
    colour="#90be6d",
)


def _infer_cls(attrs, ins, node):
    t, d = need_sequence(ins[0], node, "cls_token")
    return (t + 1, d)


def _cls_apply(node, xs, layers):
    x = xs[0]
    token = layers[str(node.id)].embedding[...]
    return jnp.concatenate([jnp.broadcast_to(token[None], (x.shape[0], 1, x.shape[-1])), x], axis=1)


def _cls_onnx(b, node, xs):
    n, d = node.id, node.in_shape[-1]
    token = b.weight(node, "embedding", "weight", (1, d), "weight")
    batch = b.node(
        "Slice",
        [
            b.node("Shape", xs),
            b.const(f"{n}.starts", np.array([0], np.int64)),
            b.const(f"{n}.ends", np.array([1], np.int64)),
        ],
    )
    shape = b.node("Concat", [batch, b.const(f"{n}.rest", np.array([1, d], np.int64))], axis=0)
    return b.node("Concat", [b.node("Expand", [token, shape]), xs[0]], axis=1)


_cls_layer, _cls_params = _table(None)
# ViT's class token: a learned vector put in front of the patch tokens.
CLS_TOKEN = OpDef(
    "cls_token",
    1,
    {},
    _infer_cls,
    _cls_params,
    weights=("embedding",),
    layer=_cls_layer,
    apply=_cls_apply,
    onnx=_cls_onnx,
    code=lambda node, xs: Code(
        f"jnp.concatenate([jnp.broadcast_to(self.l{node.id}.embedding[...][None], "
        f"({xs[0]}.shape[0], 1, {node.in_shape[-1]})), {xs[0]}], axis=1)",
        f"nnx.Embed(1, {node.in_shape[-1]}, rngs=rngs)",
    ),
    feature="embed",
    colour="#90be6d",
)

# ----------------------------------------------------------------------------- reshapes


def _infer_tokens(attrs, ins, node):
    h, w, c = need_map(ins[0], node, "tokens")
    return (h * w, c)


def _tokens_onnx(b, node, xs):
    h, w, c = node.in_shape
    y = b.node("Reshape", [xs[0], b.const(f"{node.id}.shape", np.array([0, c, h * w], np.int64))])
    return b.node("Transpose", [y], perm=[0, 2, 1])


# A map's positions as a sequence, row by row (ViT's patch tokens).
TOKENS = OpDef(
    "tokens",
    1,
    {},
    _infer_tokens,
    keeps_zero=True,
    apply=lambda node, xs, layers: xs[0].reshape(xs[0].shape[0], *node.shape),
    onnx=_tokens_onnx,
    code=lambda node, xs: Code(
        f"{xs[0]}.reshape({xs[0]}.shape[0], {node.shape[0]}, {node.shape[1]})"
    ),
)


def _infer_select(attrs, ins, node):
    t, d = need_sequence(ins[0], node, "select_token")
    if not isinstance(attrs["index"], int) or not 0 <= attrs["index"] < t:
        raise GraphError(f"node {node!r}: token index {attrs['index']!r} outside 0..{t - 1}")
    return (d,)


# One token of a sequence (BERT's pooler and ViT's head read token 0).
SELECT_TOKEN = OpDef(
    "select_token",
    1,
    {"index": 0},
    _infer_select,
    keeps_zero=True,
    apply=lambda node, xs, layers: xs[0][:, node.attrs["index"]],
    onnx=lambda b, node, xs: b.node(
        "Gather",
        [xs[0], b.const(f"{node.id}.index", np.array(node.attrs["index"], np.int64))],
        axis=1,
    ),
    code=lambda node, xs: Code(f"{xs[0]}[:, {node.attrs['index']}]"),
)

SEQUENCE_OPS = (EMBED, POS_EMBED, SEGMENT_EMBED, CLS_TOKEN, TOKENS, SELECT_TOKEN)
