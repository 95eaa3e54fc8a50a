"""Ops of (H, W, C) feature maps: convolutions, channel shuffles, padding and cropping.

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
    jnp,
    need_map,
    nnx,
    padding,
    pair,
)


def spatial_out(h: int, w: int, k, s, pad, dil, node) -> tuple[int, int]:
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
    oh, ow = spatial_out(
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

SPATIAL_OPS = (CONV, CHANNEL_SHUFFLE, PAD, CROP)
