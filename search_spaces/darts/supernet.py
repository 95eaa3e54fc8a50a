"""The DARTS search network (supernet) in flax.nnx.

Every edge of a cell is a *mixed operation*: the ``softmax(alpha)``-weighted sum of the eight
DARTS operations (:data:`~search_spaces.darts.genotypes.PRIMITIVES`, ``none`` included) applied
to the edge's input. A cell has 14 edges (node ``j = 2..5`` reads every earlier node); the
normal cells share one ``(14, 8)`` alpha matrix and the reduction cells another. The network
follows ``model_search.py`` of the DARTS code: a 3x3 stem to ``3 C`` channels with an affine
BatchNorm, ``layers`` cells with reductions at ``layers // 3`` and ``2 * layers // 3``, non-affine
BatchNorm everywhere inside the cells (ops, pools, preprocessing), global average pooling and a
linear classifier.

How the graph is kept small and fast on a CPU (measured, see ``benchmarks/darts_supernet.py``):

- A cell is two ``lax.scan`` loops, not 14 unrolled mixed ops: one over the 8 edges that read
  the cell inputs (all independent; stride 2 in a reduction cell) and one over the 6 edges
  between intermediate nodes, in an order where every edge's source node is complete
  (DARTS' edge order restricted to those edges already is). The per-edge weights are stacked
  along a leading edge axis and sliced by the scan, so each cell compiles one mixed-op body
  per edge group.
- Depthwise-separable convolutions are computed as one dense convolution whose kernel is the
  product of the depthwise and pointwise kernels, ``K[i, j, c, d] = dw[i, j, c] * pw[c, d]``
  (exactly the same function; gradients reach ``dw`` and ``pw`` through the product). On this
  CPU XLA's grouped/depthwise convolution and its weight gradient are an order of magnitude
  slower than a dense convolution of the same shape, so the dense form wins although it does
  more multiply-adds. ``impl="depthwise"`` keeps the textbook depthwise + 1x1 form.
- BatchNorm in the search network always normalises with the statistics of the batch
  (no running averages), in training and evaluation alike.
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

from search_spaces.darts.genotypes import PRIMITIVES, STEPS

N_OPS = len(PRIMITIVES)
N_EDGES = sum(range(2, STEPS + 2))  # 14
BN_EPS = 1e-5
IMPLS = ("dense", "depthwise")

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
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
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


def dw_pw(
    x: jax.Array, dw: jax.Array, pw: jax.Array, stride: int, dilation: int, impl: str = "dense"
) -> jax.Array:
    """Depthwise ``k x k`` conv (``dw``: ``(k, k, C)``) then pointwise (``pw``: ``(C, C)``)."""
    if impl == "dense":
        return _conv(x, dw[:, :, :, None] * pw[None, None], stride, dilation)
    y = _conv(x, dw[:, :, None, :], stride, dilation, groups=x.shape[-1])
    return jnp.einsum("bhwc,cd->bhwd", y, pw)


def max_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pads)


def avg_pool_3x3(x: jax.Array, stride: int) -> jax.Array:
    """3x3 average pooling, padding 1, padding excluded from the count (DARTS)."""
    pads = ((0, 0), (1, 1), (1, 1), (0, 0))
    s = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, stride, stride, 1), pads)

    def counts(n: int) -> np.ndarray:
        starts = np.arange((n - 1) // stride + 1) * stride - 1
        return np.minimum(starts + 3, n) - np.maximum(starts, 0)

    c = np.outer(counts(x.shape[1]), counts(x.shape[2])).astype(np.float32)
    return s / c[None, :, :, None]


def factorized_reduce(x: jax.Array, w1: jax.Array, w2: jax.Array) -> jax.Array:
    """``FactorizedReduce`` without its ReLU: two 1x1 stride-2 convs (one shifted), concat, BN."""
    a = jnp.einsum("bhwc,cd->bhwd", x[:, ::2, ::2], w1)
    b = jnp.einsum("bhwc,cd->bhwd", x[:, 1::2, 1::2], w2)
    return batch_norm(jnp.concatenate([a, b], axis=-1))


def mixed_op(
    x: jax.Array, p: dict[str, jax.Array], w: jax.Array, stride: int, impl: str = "dense"
) -> jax.Array:
    """``sum_k w[k] * op_k(x)`` over the eight DARTS operations of one edge.

    ``p`` holds the edge's weights (see :func:`init_edge`), ``w`` the 8 softmax weights in
    :data:`PRIMITIVES` order. ``none`` contributes zeros, so it is left out of the sum (its
    weight still takes probability mass from the others through the softmax).
    """
    r = jax.nn.relu(x)
    out = w[1] * batch_norm(max_pool_3x3(x, stride))
    out = out + w[2] * batch_norm(avg_pool_3x3(x, stride))
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

    def __call__(self, s0: jax.Array, s1: jax.Array, weights: jax.Array) -> jax.Array:
        """``weights``: the (14, 8) softmax of this cell type's alphas."""
        if self.reduction_prev:
            s0 = factorized_reduce(jax.nn.relu(s0), self.pre0["fr1"][...], self.pre0["fr2"][...])
        else:
            s0 = batch_norm(jnp.einsum("bhwc,cd->bhwd", jax.nn.relu(s0), self.pre0["w"][...]))
        s1 = batch_norm(jnp.einsum("bhwc,cd->bhwd", jax.nn.relu(s1), self.pre1[...]))
        impl = self.impl
        stride = 2 if self.reduction else 1

        # 1) the 8 edges that read s0 / s1: independent of each other.
        cell_in = jnp.stack([s0, s1])
        src = jnp.asarray([EDGES[e][0] for e in INPUT_EDGES], jnp.int32)

        def input_edge(_, xs):
            p, w, s = xs
            return None, mixed_op(cell_in[s], p, w, stride, impl)

        p_in = {k: v[...] for k, v in self.inputs.items()}
        _, ys = lax.scan(input_edge, None, (p_in, weights[jnp.asarray(INPUT_EDGES)], src))
        # Edges come in pairs (s0, s1) per node 2..5 (DARTS order): node accumulators.
        nodes = ys.reshape((STEPS, 2) + ys.shape[1:]).sum(axis=1)

        # 2) the 6 edges between intermediate nodes, in DARTS order (sources are complete).
        src_in = jnp.asarray([EDGES[e][0] - 2 for e in INNER_EDGES], jnp.int32)
        dst_in = jnp.asarray([EDGES[e][1] - 2 for e in INNER_EDGES], jnp.int32)

        def inner_edge(acc, xs):
            p, w, s, d = xs
            y = mixed_op(acc[s], p, w, 1, impl)
            return acc.at[d].add(y), None

        p_inner = {k: v[...] for k, v in self.inner.items()}
        nodes, _ = lax.scan(
            inner_edge, nodes, (p_inner, weights[jnp.asarray(INNER_EDGES)], src_in, dst_in)
        )
        # concat nodes 2..5 along channels
        return jnp.moveaxis(nodes, 0, -2).reshape(nodes.shape[1:-1] + (-1,))


class DartsSupernet(nnx.Module):
    """The DARTS search network.

    Args:
        C: initial width (DARTS searches with 16).
        layers: number of cells (DARTS searches with 8).
        num_classes: classifier outputs.
        in_channels: image channels.
        stem_multiplier: the stem has ``stem_multiplier * C`` channels.
        impl: ``"dense"`` (depthwise x pointwise as one dense conv; fastest on CPU) or
            ``"depthwise"`` (grouped conv + 1x1).
        seed: initialisation seed (weights and alphas; alphas are ``1e-3 * N(0, 1)``).
    """

    def __init__(
        self,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_multiplier: int = 3,
        impl: str = "dense",
        seed: int = 0,
    ) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
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
