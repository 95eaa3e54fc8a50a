"""Ops of (H, W, C) feature maps: convolutions, pooling, shuffles, padding and cropping.

Maps are NHWC in flax and in generated code, NCHW in ONNX.
"""

from __future__ import annotations

import numpy as np

from nas.errors import GraphError
from nas.ops.base import (
    REQUIRED,
    Code,
    OpDef,
    call_layer,
    jax,
    jnp,
    need_map,
    nnx,
    padding,
    pair,
)


def _spatial_out(h: int, w: int, k, s, pad, dil, node) -> tuple[int, int]:
    kh, kw = k
    sh, sw = s
    dh, dw = dil
    t, b, left, r = pad
    oh = (h + t + b - dh * (kh - 1) - 1) // sh + 1
    ow = (w + left + r - dw * (kw - 1) - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise GraphError(
            f"node {node!r}: a {kh}x{kw} window with stride {s} on a {h}x{w} map leaves no output"
        )
    return oh, ow


# ----------------------------------------------------------------------------- conv


def _infer_conv(attrs, ins, node):
    h, w, c = need_map(ins[0], node, "conv")
    groups = attrs["groups"]
    cout = attrs["out_channels"]
    if not isinstance(cout, int) or cout <= 0:
        raise GraphError(f"node {node!r}: out_channels must be a positive int, got {cout!r}")
    if not isinstance(groups, int) or groups <= 0 or c % groups or cout % groups:
        raise GraphError(
            f"node {node!r}: groups={groups!r} must divide in_channels={c} and out_channels={cout}"
        )
    oh, ow = _spatial_out(
        h,
        w,
        pair(attrs["kernel"], "kernel", node),
        pair(attrs["stride"], "stride", node),
        padding(attrs["padding"], node),
        pair(attrs["dilation"], "dilation", node),
        node,
    )
    return (oh, ow, cout)


def _conv_params(attrs, ins, out):
    kh, kw = pair(attrs["kernel"], "kernel", None)
    n = kh * kw * (ins[0][-1] // attrs["groups"]) * out[-1]
    return n + (out[-1] if attrs["bias"] else 0)


def _conv_macs(attrs, ins, out, conv):
    kh, kw = pair(attrs["kernel"], "kernel", None)
    oh, ow, cout = out
    n = oh * ow * kh * kw * (ins[0][-1] // attrs["groups"]) * cout
    if attrs["bias"] and conv.conv_bias:
        n += oh * ow * cout
    return n


def _conv_layer(node, rngs, init):
    from nas.model import conv_general_dilated  # the native depthwise kernel where it builds

    a, n = node.attrs, node.id
    t, b, left, r = padding(a["padding"], n)
    return nnx.Conv(
        node.in_shape[-1],
        a["out_channels"],
        kernel_size=pair(a["kernel"], "kernel", n),
        strides=pair(a["stride"], "stride", n),
        padding=((t, b), (left, r)),
        kernel_dilation=pair(a["dilation"], "dilation", n),
        feature_group_count=a["groups"],
        use_bias=a["bias"],
        conv_general_dilated=conv_general_dilated,
        rngs=rngs,
        **init,
    )


def _conv_onnx(b, node, xs):
    a, n = node.attrs, node.id
    kh, kw = pair(a["kernel"], "kernel", n)
    t, bo, left, r = padding(a["padding"], n)
    cout, groups = a["out_channels"], a["groups"]
    wshape = (cout, node.in_shape[-1] // groups, kh, kw)
    inputs = [
        xs[0],
        b.weight(node, "kernel", "weight", wshape, "weight", lambda k: k.transpose(3, 2, 0, 1)),
    ]
    if a["bias"]:
        inputs.append(b.weight(node, "bias", "bias", (cout,), "bias"))
    return b.node(
        "Conv",
        inputs,
        kernel_shape=[kh, kw],
        strides=list(pair(a["stride"], "stride", n)),
        pads=[t, left, bo, r],
        dilations=list(pair(a["dilation"], "dilation", n)),
        group=groups,
    )


def _conv_code(node, xs):
    a, n = node.attrs, node.id
    t, b, left, r = padding(a["padding"], n)
    return Code(
        f"self.l{n}({xs[0]})",
        f"nnx.Conv({node.in_shape[-1]}, {a['out_channels']}, "
        f"kernel_size={pair(a['kernel'], 'kernel', n)}, strides={pair(a['stride'], 'stride', n)}, "
        f"padding=(({t}, {b}), ({left}, {r})), kernel_dilation={pair(a['dilation'], 'dilation', n)}, "
        f"feature_group_count={a['groups']}, use_bias={a['bias']}, rngs=rngs)",
    )


def _conv_category(node) -> str:
    a = node.attrs
    if a["groups"] > 1:
        return "conv_dw" if a["groups"] == node.in_shape[-1] else "conv_group"
    return "conv_1x1" if pair(a["kernel"], "kernel", node.id) == (1, 1) else "conv"


def _conv_label(node) -> str:
    a = node.attrs
    k = a["kernel"] if isinstance(a["kernel"], int) else "x".join(map(str, a["kernel"]))
    dw = " dw" if a["groups"] > 1 and a["groups"] == node.in_shape[-1] else ""
    s = f" s{a['stride']}" if a["stride"] not in (1, [1, 1]) else ""
    return f"conv{k}{dw}{s}\n{a['out_channels']}ch"


CONV = OpDef(
    "conv",
    1,
    {
        "out_channels": REQUIRED,
        "kernel": REQUIRED,
        "stride": 1,
        "padding": 0,
        "dilation": 1,
        "groups": 1,
        "bias": False,
    },
    _infer_conv,
    _conv_params,
    _conv_macs,
    keeps_zero=lambda attrs: not attrs["bias"],
    weights=("kernel", "bias"),
    layer=_conv_layer,
    apply=call_layer,
    onnx=_conv_onnx,
    code=_conv_code,
    feature=_conv_category,
    host=True,
    mixes_positions=lambda node: max(pair(node.attrs["kernel"], "kernel", node.id)) > 1,
    label=_conv_label,
    colour="#8ecae6",
)

# ----------------------------------------------------------------------------- pooling


def _infer_pool(attrs, ins, node):
    h, w, c = need_map(ins[0], node, "pool")
    oh, ow = _spatial_out(
        h,
        w,
        pair(attrs["kernel"], "kernel", node),
        pair(attrs["stride"], "stride", node),
        padding(attrs["padding"], node),
        (1, 1),
        node,
    )
    return (oh, ow, c)


def window_counts(size: int, k: int, s: int, lo: int, hi: int) -> np.ndarray:
    """How many valid (unpadded) elements each pooling window covers along one axis."""
    n_out = (size + lo + hi - k) // s + 1
    starts = np.arange(n_out) * s - lo
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


def _pool_apply(kind: str):
    def apply(node, xs, layers):
        a, x = node.attrs, xs[0]
        kh, kw = pair(a["kernel"], "kernel", None)
        sh, sw = pair(a["stride"], "stride", None)
        t, b, left, r = padding(a["padding"], None)
        window, strides = (1, kh, kw, 1), (1, sh, sw, 1)
        pads = ((0, 0), (t, b), (left, r), (0, 0))
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
        summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
        if a.get("count_include_pad", True) or not any((t, b, left, r)):
            return summed / (kh * kw)
        # Valid-element counts depend only on static shapes: compute them in numpy.
        rows = window_counts(x.shape[1], kh, sh, t, b)
        cols = window_counts(x.shape[2], kw, sw, left, r)
        return summed / np.outer(rows, cols).astype(np.float32)[None, :, :, None]

    return apply


def _pool_onnx(b, node, xs):
    a, n = node.attrs, node.id
    t, bo, left, r = padding(a["padding"], n)
    kw_attrs = {
        "kernel_shape": list(pair(a["kernel"], "kernel", n)),
        "strides": list(pair(a["stride"], "stride", n)),
        "pads": [t, left, bo, r],
    }
    if node.op == "avg_pool":
        kw_attrs["count_include_pad"] = int(bool(a["count_include_pad"]))
        return b.node("AveragePool", xs, **kw_attrs)
    return b.node("MaxPool", xs, **kw_attrs)


def _pool_code(node, xs):
    a, n = node.attrs, node.id
    t, b, left, r = padding(a["padding"], n)
    k, s = pair(a["kernel"], "kernel", n), pair(a["stride"], "stride", n)
    pads = f"(({t}, {b}), ({left}, {r}))"
    if node.op == "max_pool":
        return Code(f"_max_pool({xs[0]}, {k}, {s}, {pads})")
    return Code(f"_avg_pool({xs[0]}, {k}, {s}, {pads}, {a['count_include_pad']})")


_AVG_POOL_SRC = """
def _avg_pool(x, k, s, pads, count_include_pad):
    window, strides = (1, k[0], k[1], 1), (1, s[0], s[1], 1)
    full = ((0, 0), pads[0], pads[1], (0, 0))
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, full)
    if count_include_pad or not any(pads[0] + pads[1]):
        return summed / (k[0] * k[1])

    def counts(size, kk, ss, lo, hi):
        n = (size + lo + hi - kk) // ss + 1
        starts = np.arange(n) * ss - lo
        return np.minimum(starts + kk, size) - np.maximum(starts, 0)

    c = np.outer(counts(x.shape[1], k[0], s[0], *pads[0]), counts(x.shape[2], k[1], s[1], *pads[1]))
    return summed / c.astype(np.float32)[None, :, :, None]
"""

_MAX_POOL_SRC = """
def _max_pool(x, k, s, pads):
    full = ((0, 0), pads[0], pads[1], (0, 0))
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, k[0], k[1], 1), (1, s[0], s[1], 1), full)
"""


def _pool(name: str, defaults: dict, src: str) -> OpDef:
    kind = name.split("_")[0]
    return OpDef(
        name,
        1,
        defaults,
        _infer_pool,
        keeps_zero=True,
        apply=_pool_apply(kind),
        onnx=_pool_onnx,
        code=_pool_code,
        code_helpers=(src,),
        feature=name,
        host=True,
        mixes_positions=True,
        label=lambda node: f"{kind}pool{node.attrs['kernel']}",
        colour="#cdb4db",
    )


MAX_POOL = _pool("max_pool", {"kernel": REQUIRED, "stride": 1, "padding": 0}, _MAX_POOL_SRC)
AVG_POOL = _pool(
    "avg_pool",
    {"kernel": REQUIRED, "stride": 1, "padding": 0, "count_include_pad": True},
    _AVG_POOL_SRC,
)


def _infer_global_pool(attrs, ins, node):
    if attrs["mode"] not in ("avg", "max"):
        raise GraphError(f"node {node!r}: global_pool mode must be avg or max")
    s = ins[0]
    if len(s) == 2:  # a (T, D) sequence pools over its tokens
        return (1, s[1]) if attrs["keepdims"] else (s[1],)
    h, w, c = need_map(s, node, "global_pool")
    return (1, 1, c) if attrs["keepdims"] else (c,)


def _axes(node) -> tuple[int, ...]:
    return (1,) if len(node.in_shape) == 2 else (1, 2)


def _global_pool_apply(node, xs, layers):
    red = jnp.mean if node.attrs["mode"] == "avg" else jnp.max
    return red(xs[0], axis=_axes(node), keepdims=node.attrs["keepdims"])


def _global_pool_onnx(b, node, xs):
    avg = node.attrs["mode"] == "avg"
    if len(node.in_shape) == 2:
        axes = b.const(f"{node.id}.axes", np.array([1], np.int64))
        op = "ReduceMean" if avg else "ReduceMax"
        return b.node(op, [xs[0], axes], keepdims=int(bool(node.attrs["keepdims"])))
    pooled = b.node("GlobalAveragePool" if avg else "GlobalMaxPool", xs)
    return pooled if node.attrs["keepdims"] else b.node("Flatten", [pooled], axis=1)


def _global_pool_code(node, xs):
    fn = "jnp.mean" if node.attrs["mode"] == "avg" else "jnp.max"
    return Code(f"{fn}({xs[0]}, axis={_axes(node)}, keepdims={node.attrs['keepdims']})")


GLOBAL_POOL = OpDef(
    "global_pool",
    1,
    {"mode": "avg", "keepdims": False},
    _infer_global_pool,
    keeps_zero=True,
    apply=_global_pool_apply,
    onnx=_global_pool_onnx,
    code=_global_pool_code,
    feature="global_pool",
    host=True,
    colour="#cdb4db",
)

# ----------------------------------------------------------------------------- reshuffles


def _infer_shuffle(attrs, ins, node):
    s = need_map(ins[0], node, "channel_shuffle")
    if s[-1] % attrs["groups"]:
        raise GraphError(f"node {node!r}: {s[-1]} channels do not split into {attrs['groups']}")
    return s


def channel_shuffle(x, groups: int):
    """PyTorch's NCHW ``view(B, g, C/g, H, W).transpose(1, 2)`` in NHWC."""
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


def _shuffle_onnx(b, node, xs):
    hh, ww, c = node.in_shape
    g, n = node.attrs["groups"], node.id
    s1 = b.const(f"{n}.shape1", np.array([0, g, c // g, hh, ww], np.int64))
    s2 = b.const(f"{n}.shape2", np.array([0, c, hh, ww], np.int64))
    y = b.node("Reshape", [xs[0], s1])
    y = b.node("Transpose", [y], perm=[0, 2, 1, 3, 4])
    return b.node("Reshape", [y, s2])


_SHUFFLE_SRC = """
def _shuffle(x, g):
    b, h, w, c = x.shape
    return x.reshape(b, h, w, g, c // g).swapaxes(3, 4).reshape(b, h, w, c)
"""

CHANNEL_SHUFFLE = OpDef(
    "channel_shuffle",
    1,
    {"groups": 2},
    _infer_shuffle,
    keeps_zero=True,
    apply=lambda node, xs, layers: channel_shuffle(xs[0], node.attrs["groups"]),
    onnx=_shuffle_onnx,
    code=lambda node, xs: Code(f"_shuffle({xs[0]}, {node.attrs['groups']})"),
    code_helpers=(_SHUFFLE_SRC,),
)

# ----------------------------------------------------------------------------- borders

_SIDES = ("top", "bottom", "left", "right")


def _infer_pad_crop(sign: int):
    def infer(attrs, ins, node):
        h, w, c = need_map(ins[0], node, "pad/crop")
        t, b, left, r = (attrs[k] for k in _SIDES)
        if min(t, b, left, r) < 0:
            raise GraphError(f"node {node!r}: pad/crop amounts must be >= 0")
        oh, ow = h + sign * (t + b), w + sign * (left + r)
        if oh <= 0 or ow <= 0:
            raise GraphError(f"node {node!r}: cropping {h}x{w} by {(t, b, left, r)} leaves nothing")
        return (oh, ow, c)

    return infer


def _pad_onnx(b, node, xs):
    t, bo, left, r = (node.attrs[k] for k in _SIDES)
    pads = b.const(f"{node.id}.pads", np.array([0, 0, t, left, 0, 0, bo, r], np.int64))
    return b.node("Pad", [xs[0], pads], mode="constant")


def _crop_apply(node, xs, layers):
    a = node.attrs
    h, w = xs[0].shape[1:3]
    return xs[0][:, a["top"] : h - a["bottom"], a["left"] : w - a["right"], :]


def _crop_onnx(b, node, xs):
    hh, ww, _ = node.in_shape
    t, bo, left, r = (node.attrs[k] for k in _SIDES)
    n = node.id
    starts = b.const(f"{n}.starts", np.array([t, left], np.int64))
    ends = b.const(f"{n}.ends", np.array([hh - bo, ww - r], np.int64))
    axes = b.const(f"{n}.axes", np.array([2, 3], np.int64))
    return b.node("Slice", [xs[0], starts, ends, axes])


def _crop_code(node, xs):
    a = node.attrs
    h, w = node.in_shape[0], node.in_shape[1]
    return Code(f"{xs[0]}[:, {a['top']}:{h - a['bottom']}, {a['left']}:{w - a['right']}, :]")


# Zero padding / cropping of the spatial borders (DARTS' FactorizedReduce shifts by one
# pixel with a crop; TF-style asymmetric "SAME" padding is a pad).
PAD = OpDef(
    "pad",
    1,
    dict.fromkeys(_SIDES, 0),
    _infer_pad_crop(1),
    keeps_zero=True,
    apply=lambda node, xs, layers: jnp.pad(
        xs[0],
        (
            (0, 0),
            (node.attrs["top"], node.attrs["bottom"]),
            (node.attrs["left"], node.attrs["right"]),
            (0, 0),
        ),
    ),
    onnx=_pad_onnx,
    code=lambda node, xs: Code(
        f"jnp.pad({xs[0]}, ((0, 0), ({node.attrs['top']}, {node.attrs['bottom']}), "
        f"({node.attrs['left']}, {node.attrs['right']}), (0, 0)))"
    ),
)
CROP = OpDef(
    "crop",
    1,
    dict.fromkeys(_SIDES, 0),
    _infer_pad_crop(-1),
    keeps_zero=True,
    apply=_crop_apply,
    onnx=_crop_onnx,
    code=_crop_code,
)

SPATIAL_OPS = (CONV, MAX_POOL, AVG_POOL, GLOBAL_POOL, CHANNEL_SHUFFLE, PAD, CROP)
