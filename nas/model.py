"""A generic flax.nnx model built from any valid :class:`~nas.graph.ArchGraph`.

The model interprets the graph in topological order, each node through its op's flax
lowering (:class:`nas.ops.OpDef` ``layer`` and ``apply``); every parametric node owns a flax
layer named after its node id, so the weights of a model and its graph correspond one to one
(which export, weight transfer and predictors rely on). Inputs are NHWC batches of images,
``[N, T]`` int32 token ids, or whatever the graph's input declares.

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
from flax import nnx

from nas import kernels
from nas.errors import GraphError
from nas.graph import ArchGraph
from nas.ops import OPS, Node


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


def channel_shuffle(x: jax.Array, groups: int) -> jax.Array:
    """PyTorch's NCHW ``view(B, g, C/g, H, W).transpose(1, 2)`` in NHWC."""
    from nas.ops.spatial import channel_shuffle as shuffle

    return shuffle(x, groups)


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
        self.graph_json = graph.dumps()  # static: the architecture travels with the model
        self._plan: list[tuple[int, str, tuple[int, ...], dict[str, Any]]] = []
        layers: dict[str, nnx.Module] = {}
        for n in graph.topological():
            node = graph.node(n)
            spec = OPS[node.op]
            layer = spec.layer(node, rngs, _given_inits(graph, n, weights))
            if layer is not None:
                layers[str(n)] = layer
                if weights is not None:
                    for name in spec.stats:  # batch-norm running statistics
                        var = getattr(layer, name)
                        var[...] = _given_value(graph, n, weights, name, var[...].shape)
            shapes = (node.in_shapes, node.shape)
            self._plan.append((n, node.op, tuple(graph.inputs(n)), dict(node.attrs), shapes))
        self.layers = nnx.Dict(layers)
        self.output_node = graph.output

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.values(x)[self.output_node]

    def values(self, x: jax.Array) -> dict[int, jax.Array]:
        """Every node's value for the batch ``x``, by node id (zero-cost proxies read the
        activations)."""
        vals: dict[int, jax.Array] = {}
        for n, op, ins, attrs, (in_shapes, shape) in self._plan:
            xs = [vals[i] for i in ins] if ins else [x]
            node = Node(n, op, attrs, in_shapes, shape)
            vals[n] = OPS[op].apply(node, xs, self.layers)
        return vals

    def graph(self) -> ArchGraph:
        return ArchGraph.loads(self.graph_json)


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
    names = OPS[graph.op(n)].weights
    if weights is None or not names:
        return {}

    def given(name: str):
        return lambda _key, shape, dtype: _given_value(graph, n, weights, name, shape, dtype)

    return {f"{name}_init": given(name) for name in names}


def build_model(graph: ArchGraph, seed: int = 0) -> GraphModel:
    """A freshly initialised flax.nnx model for ``graph``."""
    return GraphModel(graph, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


def count_model_params(model: nnx.Module) -> int:
    """Trainable parameters of a model (``nnx.Param`` leaves only)."""
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))
