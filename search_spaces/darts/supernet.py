"""The DARTS search network (supernet) in flax.nnx.

Every edge of a cell is a *mixed operation*: the ``softmax(alpha)``-weighted sum of the eight
DARTS operations (:data:`~nas.search_spaces.darts.genotypes.PRIMITIVES`, ``none`` included) applied
to the edge's input. A cell has 14 edges (node ``j = 2..5`` reads every earlier node); the
normal cells share one ``(14, 8)`` alpha matrix and the reduction cells another. The network
follows ``model_search.py`` of the DARTS code: a 3x3 stem to ``3 C`` channels with an affine
BatchNorm, ``layers`` cells with reductions at ``layers // 3`` and ``2 * layers // 3``, non-affine
BatchNorm everywhere inside the cells (ops, pools, preprocessing), global average pooling and a
linear classifier.

How the step is kept fast on a CPU (measured, see ``benchmarks/darts_supernet.py`` and
``tests/test_darts_search.py``):

- No ``lax.scan`` over edges (nor over the phases of a search step, see ``search.py``):
  XLA:CPU runs a convolution inside a loop body about 40x slower than the same convolution
  outside (644 ms against 15 ms for a 3x3 conv at 64x32x32x16, forward + backward), so the
  14 edges of a cell are unrolled.
- The edges that read the same node are computed together (:func:`edge_group`): ReLU, both
  pools and their BatchNorms once per node; with ``impl="dense"`` the first stage of each
  conv op for all those edges is ONE convolution whose output channels are the edges'.
  ``none`` contributes zero and is never computed (its weight still takes softmax mass).
- ``impl="native"`` (the default where :mod:`nas.kernels` builds, i.e. wherever a C++
  compiler is present) runs each depthwise -> pointwise stage as one call of a C++ kernel
  through the XLA FFI, ReLU included (:func:`nas.kernels.depthwise_pointwise`): the
  depthwise output never leaves the cache, and the weight gradients are one pass each.
  The benchmark step fell from 7.0-7.7 s (``dense``) to about 2.8-3.0 s.
- ``impl="dense"`` (the default without a compiler) writes depthwise x pointwise as one
  dense conv (kernel ``dw[i, j, c] * pw[c, d]``, the same function). ``impl="shift"``
  computes depthwise convs as ``k*k`` shifted multiply-adds
  (:func:`nas.oneshot.shifted_depthwise`, custom VJP): its step is about as fast as
  ``dense`` (6.40 s against 7.01 s in the benchmark setting) but compiles far more slowly
  (175 s against 72 s there; a one-cell C=4 network 67 s against ~12 s).
  ``impl="depthwise"`` is XLA's grouped conv + 1x1, the textbook form.
  :func:`mixed_op` is the plain per-edge reference.
- Pooling is written as shifted max/sum: ``reduce_window`` max pooling's gradient
  (``select_and_scatter``) is ~15x slower on this CPU.
- BatchNorm in the search network always normalises with the statistics of the batch
  (no running averages), in training and evaluation alike, without affine parameters. Its
  variance is ``E[x^2] - E[x]^2``: both sums in one pass over the activations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax
from nas.search_spaces.darts.genotypes import PRIMITIVES, STEPS

from nas import kernels
from nas.oneshot import shifted_depthwise

N_OPS = len(PRIMITIVES)
N_EDGES = sum(range(2, STEPS + 2))  # 14
BN_EPS = 1e-5
IMPLS = ("auto", "native", "shift", "dense", "depthwise")

# Edges in DARTS order: node j = 2..5 reads nodes 0..j-1, edge index = offset + source.
EDGES: tuple[tuple[int, int], ...] = tuple(
    (src, j) for j in range(2, STEPS + 2) for src in range(j)
)
"""``(source, destination)`` node of each of the 14 edges, in DARTS' alpha row order."""
INPUT_EDGES = tuple(e for e, (s, _) in enumerate(EDGES) if s < 2)  # read the cell inputs
INNER_EDGES = tuple(e for e, (s, _) in enumerate(EDGES) if s >= 2)  # read intermediate nodes

# The parametric ops of one edge: name -> (kernel, dilation, number of dw/pw stages).
_CONVS: dict[str, tuple[int, int, int]] = {
    "sep_conv_3x3": (3, 1, 2),
    "sep_conv_5x5": (5, 1, 2),
    "dil_conv_3x3": (3, 2, 1),
    "dil_conv_5x5": (5, 2, 1),
}


class Alpha(nnx.Variable):
    """Architecture parameters (kept apart from the weights, which are ``nnx.Param``)."""


# ------------------------------------------------------------------------------ functional ops


def batch_norm(x: jax.Array, scale: jax.Array | None = None, bias: jax.Array | None = None):
    """BatchNorm with batch statistics over (N, H, W); affine when ``scale`` is given."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.maximum(jnp.mean(jnp.square(x), axis=(0, 1, 2)) - jnp.square(mean), 0.0)
    y = (x - mean) * lax.rsqrt(var + BN_EPS)
    if scale is not None:
        y = y * scale + bias
    return y


def _conv(x: jax.Array, kernel: jax.Array, stride: int, dilation: int = 1, groups: int = 1):
    k = kernel.shape[0]
    pad = dilation * (k - 1) // 2
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        ((pad, pad), (pad, pad)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _out_size(n: int, stride: int) -> int:
    return (n - 1) // stride + 1


def default_impl() -> str:
    """``native`` on the CPU where the native kernels are available, else ``dense``; on a GPU
    or TPU ``depthwise`` (XLA's grouped conv + 1x1; :func:`nas.kernels.depthwise_impl`)."""
    return kernels.depthwise_impl(cpu_fallback="dense", accelerator="depthwise")


def _dw_xla(x: jax.Array, w: jax.Array, stride: int, dilation: int) -> jax.Array:
    return _conv(x, w[:, :, None, :], stride, dilation, groups=x.shape[-1])


def depthwise_conv(
    x: jax.Array, w: jax.Array, stride: int, dilation: int = 1, impl: str = "shift"
) -> jax.Array:
    """Depthwise ``k x k`` conv, padding ``dilation * (k - 1) // 2`` (``w``: ``(k, k, C)``).

    ``impl="native"``: the C++ kernel (:func:`nas.kernels.depthwise`); ``impl="shift"``:
    shifted multiply-adds with a custom VJP (:func:`nas.oneshot.shifted_depthwise`); anything
    else: XLA's grouped convolution.
    """
    if impl == "native":
        return kernels.depthwise(x, w, stride, dilation)
    if impl == "shift":
        return shifted_depthwise(x, w, stride, dilation)
    return _dw_xla(x, w, stride, dilation)


def dw_pw(
    x: jax.Array, dw: jax.Array, pw: jax.Array, stride: int, dilation: int, impl: str = "dense"
) -> jax.Array:
    """Depthwise ``k x k`` conv (``dw``: ``(k, k, C)``) then pointwise (``pw``: ``(C, C)``)."""
    if impl == "dense":
        return _conv(x, dw[:, :, :, None] * pw[None, None], stride, dilation)
    y = depthwise_conv(x, dw, stride, dilation, impl)
    return jnp.einsum("bhwc,cd->bhwd", y, pw)


def _pool_3x3(x: jax.Array, stride: int, op, pad_value: float) -> jax.Array:
    """Separable 3x3 pooling (padding 1) as shifted slices: along W, then along H."""
    ho, wo = _out_size(x.shape[1], stride), _out_size(x.shape[2], stride)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=pad_value)
    b, h2, _, c = xp.shape
    row = None
    for j in range(3):
        t = lax.slice(xp, (0, 0, j, 0), (b, h2, j + (wo - 1) * stride + 1, c), (1, 1, stride, 1))
        row = t if row is None else op(row, t)
    out = None
    for i in range(3):
        t = lax.slice(row, (0, i, 0, 0), (b, i + (ho - 1) * stride + 1, wo, c), (1, stride, 1, 1))
        out = t if out is None else op(out, t)
    return out


def max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    """3x3 max pooling, padding 1 (shifted maxima; ``reduce_window``'s gradient is slow)."""
    return _pool_3x3(x, stride, jnp.maximum, -jnp.inf)


def _avg_counts(h: int, w: int, stride: int) -> np.ndarray:
    def counts(n: int) -> np.ndarray:
        starts = np.arange(_out_size(n, stride)) * stride - 1
        return np.minimum(starts + 3, n) - np.maximum(starts, 0)

    return np.outer(counts(h), counts(w)).astype(np.float32)[None, :, :, None]


def avg_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    """3x3 average pooling, padding 1, padding excluded from the count (DARTS)."""
    s = _pool_3x3(x, stride, jnp.add, 0.0)
    return s / _avg_counts(x.shape[1], x.shape[2], stride)


def _max_pool_reference(x: jax.Array, stride: int) -> jax.Array:
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pads)


def _avg_pool_reference(x: jax.Array, stride: int) -> jax.Array:
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    s = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, stride, stride, 1), pads)
    return s / _avg_counts(x.shape[1], x.shape[2], stride)


def factorized_reduce(x: jax.Array, w1: jax.Array, w2: jax.Array) -> jax.Array:
    """``FactorizedReduce`` without its ReLU: two 1x1 stride-2 convs (one shifted), concat, BN."""
    a = jnp.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], w1)
    b = jnp.einsum("bhwc,cd->bhwd", x[:, 1::2, 1::2], w2)
    return batch_norm(jnp.concatenate([a, b], axis=-1))


def mixed_op(
    x: jax.Array, p: dict[str, jax.Array], w: jax.Array, stride: int, impl: str = "dense"
) -> jax.Array:
    """``sum_k w[k] * op_k(x)`` over the eight DARTS operations of one edge: the plain
    reference (one op at a time, ``reduce_window`` pools); the network uses :func:`edge_group`.

    ``p`` holds the edge's weights (see :func:`init_edges`), ``w`` the 8 softmax weights in
    :data:`PRIMITIVES` order. ``none`` contributes zeros, so it is left out of the sum (its
    weight still takes probability mass from the others through the softmax).
    """
    r = jax.nn.relu(x)
    out = w[1] * batch_norm(_max_pool_reference(x, stride))
    out = out + w[2] * batch_norm(_avg_pool_reference(x, stride))
    skip = x if stride == 1 else factorized_reduce(r, p["fr1"], p["fr2"])
    out = out + w[3] * skip
    for k, name in enumerate(_CONVS, start=4):
        _, dil, stages = _CONVS[name]
        y = r
        for s in range(stages):
            y = y if s == 0 else jax.nn.relu(y)
            y = dw_pw(y, p[f"{name}/dw{s}"], p[f"{name}/pw{s}"], stride if s == 0 else 1, dil, impl)
            y = batch_norm(y)
        out = out + w[k] * y
    return out


def edge_group(
    x: jax.Array, p: dict[str, jax.Array], w: jax.Array, stride: int, impl: str = "dense"
) -> list[jax.Array]:
    """The mixed ops of ``E`` edges that read the same node ``x``.

    ``p``: the edges' weights stacked along a leading edge axis (see :func:`init_edges`);
    ``w``: ``(E, 8)`` softmax weights. Returns the ``E`` edge outputs; output ``e`` equals
    ``mixed_op(x, p[e], w[e], stride, impl)``. ReLU, both pools and their BatchNorms are
    computed once for all the edges; with ``impl="dense"`` the first conv stage of all edges
    is one convolution whose output channels are the edges' outputs.
    """
    n = w.shape[0]
    r = jax.nn.relu(x)
    mp = batch_norm(max_pool_3x3(x, stride))
    ap = batch_norm(avg_pool_3x3(x, stride))
    outs = []
    for e in range(n):
        out = w[e, 1] * mp + w[e, 2] * ap
        skip = x if stride == 1 else factorized_reduce(r, p["fr1"][e], p["fr2"][e])
        outs.append(out + w[e, 3] * skip)
    for k, name in enumerate(_CONVS, start=4):
        kk, dil, stages = _CONVS[name]
        dw0, pw0 = p[f"{name}/dw0"], p[f"{name}/pw0"]
        if impl == "native":  # the ReLU is applied inside the kernel
            ys = [
                kernels.depthwise_pointwise(x, dw0[e], pw0[e], stride, dil, relu=True)
                for e in range(n)
            ]
        elif impl == "dense":  # one conv for the first stage of all the edges
            c = x.shape[-1]
            kern = jnp.einsum("eijc,ecd->ijced", dw0, pw0).reshape(kk, kk, c, n * c)
            y0 = _conv(r, kern, stride, dil)
            ys = [y0[..., e * c : (e + 1) * c] for e in range(n)]
        else:
            ys = [dw_pw(r, dw0[e], pw0[e], stride, dil, impl) for e in range(n)]
        for e in range(n):
            y = batch_norm(ys[e])
            for s in range(1, stages):
                dw, pw = p[f"{name}/dw{s}"][e], p[f"{name}/pw{s}"][e]
                if impl == "native":
                    y = kernels.depthwise_pointwise(y, dw, pw, 1, dil, relu=True)
                else:
                    y = dw_pw(jax.nn.relu(y), dw, pw, 1, dil, impl)
                y = batch_norm(y)
            outs[e] = outs[e] + w[e, k] * y
    return outs


def _uniform(rng: np.random.Generator, shape: Sequence[int], fan_in: int) -> np.ndarray:
    """PyTorch's default conv/linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=tuple(shape)).astype(np.float32)


def init_edges(rng: np.random.Generator, n: int, c: int, reduction: bool) -> dict[str, np.ndarray]:
    """Weights of ``n`` mixed-op edges of width ``c``, stacked along a leading edge axis."""
    p: dict[str, np.ndarray] = {}
    for name, (k, _, stages) in _CONVS.items():
        for s in range(stages):
            p[f"{name}/dw{s}"] = _uniform(rng, (n, k, k, c), k * k)
            p[f"{name}/pw{s}"] = _uniform(rng, (n, c, c), c)
    if reduction:
        p["fr1"] = _uniform(rng, (n, c, c // 2), c)
        p["fr2"] = _uniform(rng, (n, c, c // 2), c)
    return p


# ------------------------------------------------------------------------------ modules


class SearchCell(nnx.Module):
    """One search cell: preprocessing, 14 mixed-op edges, concat of nodes 2..5."""

    def __init__(
        self,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        rng: np.random.Generator,
        impl: str = "dense",
    ) -> None:
        self.reduction = reduction
        self.reduction_prev = reduction_prev
        self.impl = impl
        if reduction_prev:
            self.pre0 = nnx.Dict(
                fr1=nnx.Param(_uniform(rng, (c_prev_prev, c // 2), c_prev_prev)),
                fr2=nnx.Param(_uniform(rng, (c_prev_prev, c // 2), c_prev_prev)),
            )
        else:
            self.pre0 = nnx.Dict(w=nnx.Param(_uniform(rng, (c_prev_prev, c), c_prev_prev)))
        self.pre1 = nnx.Param(_uniform(rng, (c_prev, c), c_prev))
        self.inputs = nnx.Dict(
            {k: nnx.Param(v) for k, v in init_edges(rng, len(INPUT_EDGES), c, reduction).items()}
        )
        self.inner = nnx.Dict(
            {k: nnx.Param(v) for k, v in init_edges(rng, len(INNER_EDGES), c, False).items()}
        )

    def _edge_params(self, edges: Sequence[int]) -> dict[str, jax.Array]:
        """The stacked weights of ``edges`` (all reading the cell inputs, or all inner)."""
        if EDGES[edges[0]][0] < 2:
            group, order = self.inputs, INPUT_EDGES
        else:
            group, order = self.inner, INNER_EDGES
        idx = np.asarray([order.index(e) for e in edges])
        return {k: v[...][idx] for k, v in group.items()}

    def __call__(
        self, s0: jax.Array, s1: jax.Array, weights: jax.Array, reference: bool = False
    ) -> jax.Array:
        """``weights``: the (14, 8) softmax of this cell type's alphas.

        ``reference``: compute edge by edge with :func:`mixed_op` (slow; for tests).
        """
        if self.reduction_prev:
            s0 = factorized_reduce(jax.nn.relu(s0), self.pre0["fr1"][...], self.pre0["fr2"][...])
        else:
            s0 = batch_norm(jnp.einsum("bhwc,cd->bhwd", jax.nn.relu(s0), self.pre0["w"][...]))
        s1 = batch_norm(jnp.einsum("bhwc,cd->bhwd", jax.nn.relu(s1), self.pre1[...]))
        nodes = [s0, s1]
        acc: list[jax.Array | None] = [None] * STEPS
        # DARTS' edge order lists every edge into node j before any edge out of it, so node
        # j is complete once the edges of the sources before it are summed in.
        for src in range(STEPS + 1):
            if src >= 2:
                nodes.append(acc[src - 2])
            edges = [e for e, (s, _) in enumerate(EDGES) if s == src]
            stride = 2 if self.reduction and src < 2 else 1
            p = self._edge_params(edges)
            w = weights[np.asarray(edges)]
            if reference:
                ys = [
                    mixed_op(nodes[src], {k: v[i] for k, v in p.items()}, w[i], stride, self.impl)
                    for i in range(len(edges))
                ]
            else:
                ys = edge_group(nodes[src], p, w, stride, self.impl)
            for e, y_e in zip(edges, ys, strict=True):
                d = EDGES[e][1] - 2
                acc[d] = y_e if acc[d] is None else acc[d] + y_e
        nodes.append(acc[STEPS - 1])
        return jnp.concatenate(nodes[2:], axis=-1)


class DartsSupernet(nnx.Module):
    """The DARTS search network.

    Args:
        C: initial width (DARTS searches with 16).
        layers: number of cells (DARTS searches with 8).
        num_classes: classifier outputs.
        in_channels: image channels.
        stem_multiplier: the stem has ``stem_multiplier * C`` channels.
        impl: depthwise-separable conv formulation: ``"native"`` (the C++ kernels of
            :mod:`nas.kernels`: depthwise and pointwise fused, the ReLU before them too),
            ``"dense"`` (depthwise x pointwise as one dense conv), ``"shift"`` (shifted
            multiply-adds; slow to compile), ``"depthwise"`` (XLA grouped conv + 1x1), or
            ``"auto"`` (``native`` where available, else ``dense``).
        seed: initialisation seed (weights and alphas; alphas are ``1e-3 * N(0, 1)``).
    """

    def __init__(
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        impl: str = "auto",
        seed: int = 0,
    ) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if impl == "auto":
            impl = default_impl()
        if C % 2:
            raise ValueError(f"C must be even (FactorizedReduce), got {C}")
        rng = np.random.default_rng(seed)
        self.C, self.layers, self.num_classes = C, layers, num_classes
        c_curr = stem_multiplier * C
        self.stem_w = nnx.Param(_uniform(rng, (3, 3, in_channels, c_curr), 9 * in_channels))
        self.stem_scale = nnx.Param(np.ones(c_curr, np.float32))
        self.stem_bias = nnx.Param(np.zeros(c_curr, np.float32))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        cells = []
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cells.append(SearchCell(c_pp, c_p, c_curr, reduction, reduction_prev, rng, impl))
            reduction_prev = reduction
            c_pp, c_p = c_p, STEPS * c_curr
        self.cells = nnx.List(cells)
        self.fc_w = nnx.Param(_uniform(rng, (c_p, num_classes), c_p))
        self.fc_b = nnx.Param(_uniform(rng, (num_classes,), c_p))
        self.alpha_normal = Alpha(1e-3 * rng.standard_normal((N_EDGES, N_OPS)).astype(np.float32))
        self.alpha_reduce = Alpha(1e-3 * rng.standard_normal((N_EDGES, N_OPS)).astype(np.float32))

    def weights(self) -> tuple[jax.Array, jax.Array]:
        """Softmax op weights ``(normal, reduce)``, each (14, 8)."""
        return (
            jax.nn.softmax(self.alpha_normal[...], axis=-1),
            jax.nn.softmax(self.alpha_reduce[...], axis=-1),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _conv(x, self.stem_w[...], 1)
        s0 = s1 = batch_norm(x, self.stem_scale[...], self.stem_bias[...])
        w_normal, w_reduce = self.weights()
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return jnp.mean(s1, axis=(1, 2)) @ self.fc_w[...] + self.fc_b[...]


def count_weights(model: nnx.Module) -> int:
    """Number of network weights (``nnx.Param``; the alphas are not counted)."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))


def describe(model: DartsSupernet) -> dict[str, Any]:
    return {
        "C": model.C,
        "layers": model.layers,
        "weights": count_weights(model),
        "alphas": 2 * N_EDGES * N_OPS,
    }
