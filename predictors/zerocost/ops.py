"""Forward and backward of each IR op, in numpy, for :mod:`nas.predictors.zerocost.engine`.

Every op has ``forward(net, node, attrs, inputs, tape) -> output`` and ``backward(net, node,
attrs, inputs, tape, output_gradient, weights) -> (input gradients, weight gradients)``;
:data:`FORWARD` and :data:`BACKWARD` map op names to them. Arrays are NHWC maps or
``(N, F)`` vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import erf

from nas.graph import _padding, _pair

if TYPE_CHECKING:
    from nas.predictors.zerocost.engine import Network, Tape


# ---------------------------------------------------------------------------- conv


def _conv_geometry(attrs: dict) -> tuple[int, int, int, int, int, int, tuple[int, ...]]:
    kh, kw = _pair(attrs["kernel"], "kernel", None)
    sh, sw = _pair(attrs["stride"], "stride", None)
    dh, dw = _pair(attrs["dilation"], "dilation", None)
    return kh, kw, sh, sw, dh, dw, _padding(attrs["padding"], None)


def _pad(x: np.ndarray, pads: tuple[int, ...], value: float = 0.0) -> np.ndarray:
    t, b, left, r = pads
    if not any(pads):
        return x
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=value)


def _window(xp: np.ndarray, i: int, j: int, ho: int, wo: int, s: tuple, d: tuple) -> tuple:
    """The index of the input pixels that kernel tap ``(i, j)`` reads for every output."""
    return (
        slice(None),
        slice(i * d[0], i * d[0] + s[0] * (ho - 1) + 1, s[0]),
        slice(j * d[1], j * d[1] + s[1] * (wo - 1) + 1, s[1]),
    )


def _conv_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    x = xs[0]
    kh, kw, sh, sw, dh, dw, pads = _conv_geometry(attrs)
    w = net.weights[n]["kernel"]  # (groups, cin/groups * kh * kw, cout/groups)
    g = w.shape[0]
    ho, wo, cout = net.shapes[n]
    xp = _pad(x, pads)
    nb, c = x.shape[0], x.shape[-1]
    if g == c and w.shape[2] == 1:  # depthwise: one filter per channel, shifted adds
        k = w[:, :, 0].T.reshape(kh, kw, c)
        y = np.zeros((nb, ho, wo, c), net.dtype)
        for i in range(kh):
            for j in range(kw):
                y += xp[_window(xp, i, j, ho, wo, (sh, sw), (dh, dw))] * k[i, j]
        tape.cache[n] = ("dw", xp.shape)
    else:
        if kh == kw == 1:
            cols = xp[:, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw]
            cols = cols.reshape(nb * ho * wo, g, c // g)
        else:
            taps = [
                xp[_window(xp, i, j, ho, wo, (sh, sw), (dh, dw))]
                for i in range(kh)
                for j in range(kw)
            ]
            # (N, Ho, Wo, C, taps) -> rows of (channel, tap) per group: the weights' layout
            cols = np.stack(taps, -1).reshape(nb * ho * wo, g, (c // g) * kh * kw)
        if g == 1:
            y = cols[:, 0] @ w[0]
        else:
            y = np.einsum("ngk,gko->ngo", cols, w, optimize=True).reshape(nb * ho * wo, cout)
        y = y.reshape(nb, ho, wo, cout)
        tape.cache[n] = ("cols", cols, xp.shape)
    if "bias" in net.weights[n]:
        y = y + net.weights[n]["bias"]
    return y


def _conv_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    kh, kw, sh, sw, dh, dw, pads = _conv_geometry(attrs)
    w = net.weights[n]["kernel"]
    g = w.shape[0]
    nb, ho, wo, cout = gy.shape
    c = xs[0].shape[-1]
    kind = tape.cache[n][0]
    xp_shape = tape.cache[n][-1]
    gw: dict[str, np.ndarray] = {}
    if weights and "bias" in net.weights[n]:
        gw["bias"] = gy.sum((0, 1, 2))
    gxp = np.zeros(xp_shape, net.dtype)
    if kind == "dw":
        k = w[:, :, 0].T.reshape(kh, kw, c)
        xp = _pad(xs[0], pads)
        gk = np.zeros_like(k)
        for i in range(kh):
            for j in range(kw):
                idx = _window(xp, i, j, ho, wo, (sh, sw), (dh, dw))
                gxp[idx] += gy * k[i, j]
                if weights:
                    gk[i, j] = (gy * xp[idx]).sum((0, 1, 2))
        if weights:
            gw["kernel"] = gk.reshape(kh * kw, c).T[:, :, None]
    else:
        cols = tape.cache[n][1]
        gflat = gy.reshape(nb * ho * wo, g, cout // g)
        if g == 1:
            gcols = gflat[:, 0] @ w[0].T
            if weights:
                gw["kernel"] = (cols[:, 0].T @ gflat[:, 0])[None]
        else:
            gcols = np.einsum("ngo,gko->ngk", gflat, w, optimize=True)
            if weights:
                gw["kernel"] = np.einsum("ngk,ngo->gko", cols, gflat, optimize=True)
        gcols = gcols.reshape(nb, ho, wo, c, kh * kw)
        if kh == kw == 1 and sh == sw == 1 and not any(pads):
            return [gcols[..., 0]], gw  # a pointwise conv: no patches to scatter back
        for t in range(kh * kw):
            i, j = divmod(t, kw)
            gxp[_window(gxp, i, j, ho, wo, (sh, sw), (dh, dw))] += gcols[..., t]
    t, b, left, r = pads
    gx = gxp[:, t : xp_shape[1] - b, left : xp_shape[2] - r]
    return [gx], gw


def _dense_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    w = net.weights[n]
    y = xs[0] @ w["kernel"]
    return y + w["bias"] if "bias" in w else y


def _dense_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    w = net.weights[n]
    gw = {}
    if weights:
        x2 = xs[0].reshape(-1, xs[0].shape[-1])
        g2 = gy.reshape(-1, gy.shape[-1])
        gw["kernel"] = x2.T @ g2
        if "bias" in w:
            gw["bias"] = g2.sum(0)
    return [gy @ w["kernel"].T], gw


# ---------------------------------------------------------------------------- batch norm


def _bn_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    x = xs[0]
    if net.bn == "off":
        return x
    eps = attrs["eps"]
    if net.bn == "eval":  # fresh running statistics: mean 0, variance 1
        return x / np.sqrt(1.0 + eps).astype(net.dtype)
    axes = tuple(range(x.ndim - 1))
    mu = x.mean(axes)
    inv = 1.0 / np.sqrt(x.var(axes) + eps)
    xhat = (x - mu) * inv
    tape.cache[n] = (xhat, inv)
    return xhat.astype(net.dtype, copy=False)


def _bn_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    if net.bn == "off":
        return [gy], {}
    if net.bn == "eval":
        return [gy / np.sqrt(1.0 + attrs["eps"]).astype(net.dtype)], {}
    xhat, inv = tape.cache[n]
    axes = tuple(range(gy.ndim - 1))
    m = gy.size // gy.shape[-1]
    gx = inv / m * (m * gy - gy.sum(axes) - xhat * (gy * xhat).sum(axes))
    return [gx.astype(net.dtype, copy=False)], {}


# ---------------------------------------------------------------------------- elementwise


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


_ACT: dict[str, tuple[Callable, Callable]] = {
    # op: (f(x), f'(x))
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(x.dtype)),
    "relu6": (lambda x: np.clip(x, 0, 6), lambda x: ((x > 0) & (x < 6)).astype(x.dtype)),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "hsigmoid": (
        lambda x: np.clip(x + 3, 0, 6) / 6,
        lambda x: ((x > -3) & (x < 3)).astype(x.dtype) / 6,
    ),
    "hswish": (
        lambda x: x * np.clip(x + 3, 0, 6) / 6,
        lambda x: np.where(x <= -3, 0, np.where(x >= 3, 1, (2 * x + 3) / 6)).astype(x.dtype),
    ),
    "swish": (lambda x: x * _sigmoid(x), lambda x: _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "gelu": (
        lambda x: 0.5 * x * (1 + erf(x / math.sqrt(2))),
        lambda x: (
            0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        ),
    ),
}


def _act_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    op = net.graph.op(n)
    if op in ("relu", "relu6") and net.relu_inputs is not None:
        net.relu_inputs.append(xs[0])
    return _ACT[op][0](xs[0]).astype(net.dtype, copy=False)


def _act_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    return [(gy * _ACT[net.graph.op(n)][1](xs[0])).astype(net.dtype, copy=False)], {}


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    axes = tuple(
        i for i, (a, b) in enumerate(zip(g.shape, shape, strict=True)) if b == 1 and a != 1
    )
    return g.sum(axes, keepdims=True) if axes else g


def _mul_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    a, b = xs
    return [_unbroadcast(gy * b, a.shape), _unbroadcast(gy * a, b.shape)], {}


# ---------------------------------------------------------------------------- pooling


def _pool_geometry(attrs: dict) -> tuple[int, int, int, int, tuple[int, ...]]:
    kh, kw = _pair(attrs["kernel"], "kernel", None)
    sh, sw = _pair(attrs["stride"], "stride", None)
    return kh, kw, sh, sw, _padding(attrs["padding"], None)


def _pool_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    kh, kw, sh, sw, pads = _pool_geometry(attrs)
    ho, wo, _ = net.shapes[n]
    is_max = net.graph.op(n) == "max_pool"
    xp = _pad(xs[0], pads, -np.inf if is_max else 0.0)
    taps = [xp[_window(xp, i, j, ho, wo, (sh, sw), (1, 1))] for i in range(kh) for j in range(kw)]
    if is_max:
        stack = np.stack(taps)
        arg = stack.argmax(0)
        tape.cache[n] = (arg, xp.shape)
        return np.take_along_axis(stack, arg[None], 0)[0]
    counts = _avg_counts(xs[0].shape, attrs, kh, kw, sh, sw, pads, ho, wo).astype(net.dtype)
    tape.cache[n] = (counts, xp.shape)
    return sum(taps) / counts


def _avg_counts(shape, attrs, kh, kw, sh, sw, pads, ho, wo) -> np.ndarray:
    if attrs.get("count_include_pad", True) or not any(pads):
        return np.full((1, 1, 1, 1), kh * kw)
    t, b, left, r = pads

    def counts(size: int, k: int, s: int, lo: int, n_out: int) -> np.ndarray:
        starts = np.arange(n_out) * s - lo
        return np.minimum(starts + k, size) - np.maximum(starts, 0)

    rows = counts(shape[1], kh, sh, t, ho)
    cols = counts(shape[2], kw, sw, left, wo)
    return np.outer(rows, cols)[None, :, :, None]


def _pool_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    kh, kw, sh, sw, pads = _pool_geometry(attrs)
    _, ho, wo, _ = gy.shape
    first, xp_shape = tape.cache[n]
    gxp = np.zeros(xp_shape, net.dtype)
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        idx = _window(gxp, i, j, ho, wo, (sh, sw), (1, 1))
        if net.graph.op(n) == "max_pool":
            gxp[idx] += gy * (first == t)
        else:
            gxp[idx] += gy / first
    top, b, left, r = pads
    return [gxp[:, top : xp_shape[1] - b, left : xp_shape[2] - r]], {}


def _gpool_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    red = np.mean if attrs["mode"] == "avg" else np.max
    return red(xs[0], axis=(1, 2), keepdims=attrs["keepdims"])


def _gpool_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    x = xs[0]
    g = gy.reshape(x.shape[0], 1, 1, x.shape[-1])
    if attrs["mode"] == "avg":
        return [np.broadcast_to(g / (x.shape[1] * x.shape[2]), x.shape).astype(net.dtype)], {}
    hit = x == x.max(axis=(1, 2), keepdims=True)
    return [(g * hit / hit.sum(axis=(1, 2), keepdims=True)).astype(net.dtype)], {}


# ---------------------------------------------------------------------------- structure


def _zero_fwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape) -> np.ndarray:
    return np.zeros((xs[0].shape[0], *net.shapes[n]), net.dtype)


def _shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


def _unshuffle(g: np.ndarray, groups: int) -> np.ndarray:
    b, h, w, c = g.shape
    return g.reshape(b, h, w, c // groups, groups).swapaxes(3, 4).reshape(b, h, w, c)


def _crop_index(shape, attrs) -> tuple:
    return (
        slice(None),
        slice(attrs["top"], shape[1] - attrs["bottom"]),
        slice(attrs["left"], shape[2] - attrs["right"]),
    )


def _pad_attrs(attrs) -> tuple:
    return ((0, 0), (attrs["top"], attrs["bottom"]), (attrs["left"], attrs["right"]), (0, 0))


def _concat_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    cuts = np.cumsum([x.shape[-1] for x in xs])[:-1]
    return np.split(gy, cuts, axis=-1), {}


def _split_bwd(net: Network, n: int, attrs: dict, xs: list, tape: Tape, gy, weights: bool):
    g = np.zeros_like(xs[0])
    g[..., attrs["start"] : attrs["start"] + attrs["size"]] = gy
    return [g], {}


def _same(net, n, attrs, xs, tape):
    return xs[0]


def _pass(net, n, attrs, xs, tape, gy, weights):
    return [gy], {}


FORWARD: dict[str, Callable] = {
    "conv": _conv_fwd,
    "dense": _dense_fwd,
    "batch_norm": _bn_fwd,
    **{op: _act_fwd for op in _ACT},
    "add": lambda net, n, attrs, xs, tape: sum(xs[1:], xs[0]),
    "mul": lambda net, n, attrs, xs, tape: xs[0] * xs[1],
    "concat": lambda net, n, attrs, xs, tape: np.concatenate(xs, -1),
    "max_pool": _pool_fwd,
    "avg_pool": _pool_fwd,
    "global_pool": _gpool_fwd,
    "flatten": lambda net, n, attrs, xs, tape: xs[0].reshape(xs[0].shape[0], -1),
    "identity": _same,
    "output": _same,
    "dropout": _same,  # proxies score the deterministic network
    "zero": _zero_fwd,
    "channel_shuffle": lambda net, n, attrs, xs, tape: _shuffle(xs[0], attrs["groups"]),
    "split": lambda net, n, attrs, xs, tape: xs[0][
        ..., attrs["start"] : attrs["start"] + attrs["size"]
    ],
    "pad": lambda net, n, attrs, xs, tape: np.pad(xs[0], _pad_attrs(attrs)),
    "crop": lambda net, n, attrs, xs, tape: xs[0][_crop_index(xs[0].shape, attrs)],
}

BACKWARD: dict[str, Callable] = {
    "conv": _conv_bwd,
    "dense": _dense_bwd,
    "batch_norm": _bn_bwd,
    **{op: _act_bwd for op in _ACT},
    "add": lambda net, n, attrs, xs, tape, gy, w: ([gy] * len(xs), {}),
    "mul": _mul_bwd,
    "concat": _concat_bwd,
    "max_pool": _pool_bwd,
    "avg_pool": _pool_bwd,
    "global_pool": _gpool_bwd,
    "flatten": lambda net, n, attrs, xs, tape, gy, w: ([gy.reshape(xs[0].shape)], {}),
    "identity": _pass,
    "output": _pass,
    "dropout": _pass,
    "zero": lambda net, n, attrs, xs, tape, gy, w: ([None], {}),
    "channel_shuffle": lambda net, n, attrs, xs, tape, gy, w: (
        [_unshuffle(gy, attrs["groups"])],
        {},
    ),
    "split": _split_bwd,
    "pad": lambda net, n, attrs, xs, tape, gy, w: ([gy[_crop_index(gy.shape, attrs)]], {}),
    "crop": lambda net, n, attrs, xs, tape, gy, w: ([np.pad(gy, _pad_attrs(attrs))], {}),
}
