"""A generic flax.nnx model built from any valid :class:`~nas.graph.ArchGraph`.

The model interprets the graph in topological order; every parametric node owns a flax
layer named after its node id, so the weights of a model and its graph correspond one to one
(which export, weight transfer and predictors rely on). Inputs are NHWC batches.

Example:
    >>> from nas.graph import ArchGraph
    >>> g = ArchGraph.sequential((8, 8, 1), [("conv", {"out_channels": 4, "kernel": 3}),
    ...     ("global_pool", {}), ("dense", {"out_features": 3})])
    >>> m = build_model(g, seed=0)
    >>> import jax.numpy as jnp
    >>> m(jnp.zeros((2, 8, 8, 1))).shape
    (2, 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nas import kernels
from nas.errors import GraphError
from nas.graph import ArchGraph, _padding, _pair


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision=None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated``, except that a float32 depthwise 2-D conv (NHWC, one
    ``k x k`` filter per channel, odd ``k``, equal strides and dilations, symmetric padding
    ``dilation * (k - 1) // 2``: every depthwise conv of the DARTS, OFA, SPOS and NB-Macro
    spaces) runs on the native kernel (:func:`nas.kernels.depthwise`) where it builds."""
    rd = tuple(rhs_dilation or (1, 1))
    if (
        lhs.ndim == 4
        and lhs.dtype == jnp.float32
        and rhs.dtype == jnp.float32
        and feature_group_count > 1
        and rhs.shape[2] == 1
        and rhs.shape[3] == lhs.shape[3] == feature_group_count
        and rhs.shape[0] == rhs.shape[1]
        and rhs.shape[0] % 2 == 1
        and len(set(window_strides)) == 1
        and len(set(rd)) == 1
        and tuple(lhs_dilation or (1, 1)) == (1, 1)
        and not isinstance(padding, str)
        and tuple(map(tuple, padding)) == ((rd[0] * (rhs.shape[0] - 1) // 2,) * 2,) * 2
        and dimension_numbers
        == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
        and jax.device_count() == 1  # on a mesh, XLA's conv keeps the batch sharded
        and kernels.available()
    ):
        return kernels.depthwise(lhs, rhs[:, :, 0, :], window_strides[0], rd[0])
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        precision=precision,
        **kwargs,
    )


def _act(op: str, x: jax.Array) -> jax.Array:
    if op == "relu":
        return jax.nn.relu(x)
    if op == "relu6":
        return jax.nn.relu6(x)
    if op == "sigmoid":
        return jax.nn.sigmoid(x)
    if op == "hsigmoid":
        return jax.nn.relu6(x + 3.0) / 6.0
    if op == "hswish":
        return x * jax.nn.relu6(x + 3.0) / 6.0
    if op == "swish":
        return jax.nn.silu(x)
    if op == "tanh":
        return jnp.tanh(x)
    if op == "gelu":
        return jax.nn.gelu(x)
    raise AssertionError(op)


_ACTIVATIONS = frozenset(
    {"relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "tanh", "gelu"}
)


def _pool(x: jax.Array, attrs: dict[str, Any], kind: str) -> jax.Array:
    kh, kw = _pair(attrs["kernel"], "kernel", None)
    sh, sw = _pair(attrs["stride"], "stride", None)
    t, b, left, r = _padding(attrs["padding"], None)
    window = (1, kh, kw, 1)
    strides = (1, sh, sw, 1)
    pads = ((0, 0), (t, b), (left, r), (0, 0))
    if kind == "max":
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
    summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    if attrs.get("count_include_pad", True) or not any((t, b, left, r)):
        return summed / (kh * kw)
    # Valid-element counts depend only on static shapes: compute them in numpy.
    rows = _window_counts(x.shape[1], kh, sh, t, b)
    cols = _window_counts(x.shape[2], kw, sw, left, r)
    counts = np.outer(rows, cols).astype(np.float32)[None, :, :, None]
    return summed / counts


def _window_counts(size: int, k: int, s: int, lo: int, hi: int) -> np.ndarray:
    n_out = (size + lo + hi - k) // s + 1
    starts = np.arange(n_out) * s - lo
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """PyTorch's NCHW ``view(B, g, C/g, H, W).transpose(1, 2)`` in NHWC."""
    b, h, w, c = x.shape
    return x.reshape(b, h, w, groups, c // groups).swapaxes(3, 4).reshape(b, h, w, c)


class GraphModel(nnx.Module):
    """A network that executes an :class:`ArchGraph`.

    Args:
        graph: a finalized graph.
        rngs: flax random streams for initialisation (``params``) and dropout (``dropout``).
        weights: given values instead of random initialisation: node id -> variable name
            (``kernel``, ``bias``, ``scale``, ``mean``, ``var``) -> array. Every parametric
            node needs its own; a missing or misshapen one is a :class:`GraphError`. Building
            from weights runs no initialiser and no trace (an OFA child: 0.15 s, where
            tracing an abstract model and filling it took 0.6-0.75 s).
    """

    def __init__(
        self,
        graph: ArchGraph,
        *,
        rngs: nnx.Rngs,
        weights: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> None:
        order = graph.topological()
        self.graph_json = graph.dumps()  # static: the architecture travels with the model
        self._plan: list[tuple[int, str, tuple[int, ...], dict[str, Any]]] = []
        layers: dict[str, nnx.Module] = {}
        for n in order:
            op, attrs, ins = graph.op(n), graph.attrs(n), tuple(graph.inputs(n))
            in_shape = graph.shape(ins[0]) if ins else None
            init = _given_inits(graph, n, weights)
            if op == "conv":
                kh, kw = _pair(attrs["kernel"], "kernel", n)
                t, b, left, r = _padding(attrs["padding"], n)
                layers[str(n)] = nnx.Conv(
                    in_shape[-1],
                    attrs["out_channels"],
                    kernel_size=(kh, kw),
                    strides=_pair(attrs["stride"], "stride", n),
                    padding=((t, b), (left, r)),
                    kernel_dilation=_pair(attrs["dilation"], "dilation", n),
                    feature_group_count=attrs["groups"],
                    use_bias=attrs["bias"],
                    conv_general_dilated=conv_general_dilated,
                    rngs=rngs,
                    **init,
                )
            elif op == "dense":
                layers[str(n)] = nnx.Linear(
                    in_shape[-1], attrs["out_features"], use_bias=attrs["bias"], rngs=rngs, **init
                )
            elif op == "batch_norm":
                layers[str(n)] = nnx.BatchNorm(
                    in_shape[-1],
                    use_scale=attrs["affine"],
                    use_bias=attrs["affine"],
                    epsilon=attrs["eps"],
                    momentum=1.0 - attrs["momentum"],
                    rngs=rngs,
                    **init,
                )
                if weights is not None:
                    bn = layers[str(n)]
                    for name in ("mean", "var"):
                        var = getattr(bn, name)
                        var[...] = _given_value(graph, n, weights, name, var[...].shape)
            elif op == "dropout" and attrs["rate"] > 0:
                layers[str(n)] = nnx.Dropout(attrs["rate"], rngs=rngs)
            self._plan.append((n, op, ins, attrs))
        self.layers = nnx.Dict(layers)
        self.output_node = graph.output

    def __call__(self, x: jax.Array) -> jax.Array:
        vals: dict[int, jax.Array] = {}
        for n, op, ins, attrs in self._plan:
            xs = [vals[i] for i in ins]
            if op == "input":
                y = x
            elif op in ("conv", "dense", "batch_norm"):
                y = self.layers[str(n)](xs[0])
            elif op in _ACTIVATIONS:
                y = _act(op, xs[0])
            elif op == "add":
                y = xs[0]
                for other in xs[1:]:
                    y = y + other
            elif op == "mul":
                y = xs[0] * xs[1]
            elif op == "concat":
                y = jnp.concatenate(xs, axis=-1)
            elif op == "max_pool":
                y = _pool(xs[0], attrs, "max")
            elif op == "avg_pool":
                y = _pool(xs[0], attrs, "avg")
            elif op == "global_pool":
                red = jnp.mean if attrs["mode"] == "avg" else jnp.max
                y = red(xs[0], axis=(1, 2), keepdims=attrs["keepdims"])
            elif op == "flatten":
                y = xs[0].reshape(xs[0].shape[0], -1)
            elif op in ("identity", "output"):
                y = xs[0]
            elif op == "dropout":
                y = self.layers[str(n)](xs[0]) if attrs["rate"] > 0 else xs[0]
            elif op == "zero":
                s, src = attrs["stride"], xs[0]
                if src.ndim == 4:
                    src = src[:, ::s, ::s, :]
                    c = attrs["out_channels"] or src.shape[-1]
                    y = jnp.zeros(src.shape[:3] + (c,), src.dtype)
                else:
                    y = jnp.zeros_like(src)
            elif op == "channel_shuffle":
                y = channel_shuffle(xs[0], attrs["groups"])
            elif op == "split":
                y = xs[0][..., attrs["start"] : attrs["start"] + attrs["size"]]
            elif op == "pad":
                y = jnp.pad(
                    xs[0],
                    (
                        (0, 0),
                        (attrs["top"], attrs["bottom"]),
                        (attrs["left"], attrs["right"]),
                        (0, 0),
                    ),
                )
            elif op == "crop":
                h, w = xs[0].shape[1:3]
                y = xs[0][
                    :, attrs["top"] : h - attrs["bottom"], attrs["left"] : w - attrs["right"], :
                ]
            else:  # pragma: no cover - the graph was validated against OPS
                raise AssertionError(f"op {op} has no implementation in GraphModel")
            vals[n] = y
        return vals[self.output_node]

    def graph(self) -> ArchGraph:
        return ArchGraph.loads(self.graph_json)


_INIT_ARGS = {
    "conv": ("kernel", "bias"),
    "dense": ("kernel", "bias"),
    "batch_norm": ("scale", "bias"),
}


def _given_value(
    graph: ArchGraph,
    n: int,
    weights: Mapping[int, Mapping[str, Any]],
    name: str,
    shape: Any,
    dtype: Any = jnp.float32,
) -> jax.Array:
    value = weights.get(n, {}).get(name)
    if value is None:
        raise GraphError(f"node {n} ({graph.op(n)}): no weight {name!r} given")
    if tuple(value.shape) != tuple(shape):
        scope = graph.g.nodes[n].get("scope", "")
        raise GraphError(
            f"node {n} ({graph.op(n)}, scope {scope!r}): weight {name!r} of shape "
            f"{tuple(value.shape)} does not fit the layer's {tuple(shape)}"
        )
    return jnp.asarray(value, dtype)


def _given_inits(
    graph: ArchGraph, n: int, weights: Mapping[int, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """flax initialiser arguments that return node ``n``'s given weights (none without
    weights or for an op without parameters: flax's defaults)."""
    if weights is None or graph.op(n) not in _INIT_ARGS:
        return {}

    def given(name: str):
        return lambda _key, shape, dtype: _given_value(graph, n, weights, name, shape, dtype)

    return {f"{name}_init": given(name) for name in _INIT_ARGS[graph.op(n)]}


def build_model(graph: ArchGraph, seed: int = 0) -> GraphModel:
    """A freshly initialised flax.nnx model for ``graph``."""
    return GraphModel(graph, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def count_model_params(model: nnx.Module) -> int:
    """Trainable parameters of a model (``nnx.Param`` leaves only)."""
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))
