"""Pooling: windows over feature maps, and global pooling of maps and token sequences.

Maps are NHWC in flax and in generated code, NCHW in ONNX.
"""

from __future__ import annotations

import numpy as np

from nas.errors import GraphError
from nas.ops.base import REQUIRED, Code, OpDef, jax, jnp, need_map, padding, pair
from nas.ops.spatial import spatial_out

# ----------------------------------------------------------------------------- pooling


def _infer_pool(attrs, ins, node):
    h, w, c = need_map(ins[0], node, "pool")
    oh, ow = spatial_out(
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

POOLING_OPS = (MAX_POOL, AVG_POOL, GLOBAL_POOL)
