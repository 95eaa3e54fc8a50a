"""GENNAPE's networks in flax.nnx: a message-passing graph encoder and fuzzy-clustered heads.

Graphs travel as one flat, padded batch (:func:`pack`): node features, edges as
``senders``/``receivers`` index arrays, and the graph each node belongs to. Message passing
and pooling are ``jax.ops.segment_sum``/``segment_max`` over those indices, so one compiled
function serves any mix of graph sizes up to the padded size.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from nas.predictors.features import (
    CATEGORIES,
    GLOBAL_DIM,
    GLOBALS,
    NODE_DIM,
    NUMERIC,
    GraphFeatures,
)

_NUM0 = len(CATEGORIES)
CHANNEL_COLS = (_NUM0 + NUMERIC.index("log_cin"), _NUM0 + NUMERIC.index("log_cout"))
RES_COL = _NUM0 + NUMERIC.index("log_res")
INPUT_RES = GLOBALS.index("log_input_res")
SCALE_GLOBALS = ("log_params", "log_flops", "log_input_res", "log_classes", "mean_log_channels")
"""Graph-level features that measure a network's absolute size: they differ between
families by orders of magnitude, so the scale-free model sees them only through
:attr:`Gennape.cost` (a linear term) and never through the encoder or the head MLPs."""
PRIOR_GLOBALS = ("spatial_depth",)
"""Graph-level features that only the compute prior reads (:mod:`nas.predictors.gennape.prior`):
the networks' inputs stay what they were, so predictors saved before them still load."""
NET_GLOBALS = tuple(i for i, g in enumerate(GLOBALS) if g not in PRIOR_GLOBALS)
FREE_GLOBALS = tuple(i for i in NET_GLOBALS if GLOBALS[i] not in SCALE_GLOBALS)
COST_GLOBALS = {
    "flops": (GLOBALS.index("log_flops"),),
    "params": (GLOBALS.index("log_params"),),
    "both": (GLOBALS.index("log_params"), GLOBALS.index("log_flops")),
    "none": (),
}


def bucket(n: int, minimum: int = 16) -> int:
    """``n`` rounded up to a few sizes per octave (limits recompilation)."""
    n = max(int(n), minimum)
    step = 1 << max((n - 1).bit_length() - 3, 0)
    return -(-n // step) * step


def pack(
    feats: Sequence[GraphFeatures],
    n_nodes: int | None = None,
    n_edges: int | None = None,
    n_graphs: int | None = None,
) -> dict[str, np.ndarray]:
    """Concatenate graphs into one padded batch.

    Padding nodes belong to an extra graph (index ``n_graphs``) and padding edges connect
    the last padding node to itself, with masks that zero them out.
    """
    b = len(feats)
    sizes = np.fromiter((f.num_nodes for f in feats), int, b)
    esizes = np.fromiter((len(f.senders) for f in feats), int, b)
    nn, ne = int(sizes.sum()), int(esizes.sum())
    big_n = n_nodes or bucket(nn + 1)
    big_e = n_edges or bucket(ne + 1)
    big_b = n_graphs or bucket(b, 8)
    if big_n <= nn or big_e < ne or big_b < b:
        raise ValueError("padded sizes too small for the batch")
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.zeros((big_n, NODE_DIM), np.float32)
    if b:
        nodes[:nn] = np.concatenate([f.nodes for f in feats])
    snd = np.full(big_e, big_n - 1, np.int32)
    rcv = np.full(big_e, big_n - 1, np.int32)
    if ne:
        shift = np.repeat(offsets, esizes)
        snd[:ne] = np.concatenate([f.senders for f in feats]) + shift
        rcv[:ne] = np.concatenate([f.receivers for f in feats]) + shift
    node_graph = np.full(big_n, big_b, np.int32)
    node_graph[:nn] = np.repeat(np.arange(b, dtype=np.int32), sizes)
    node_mask = np.zeros(big_n, np.float32)
    node_mask[:nn] = 1.0
    edge_mask = np.zeros(big_e, np.float32)
    edge_mask[:ne] = 1.0
    glob = np.zeros((big_b, GLOBAL_DIM), np.float32)
    if b:
        glob[:b] = np.stack([f.globals for f in feats])
    graph_mask = np.zeros(big_b, np.float32)
    graph_mask[:b] = 1.0
    return {
        "nodes": nodes,
        "senders": snd,
        "receivers": rcv,
        "node_graph": node_graph,
        "node_mask": node_mask,
        "edge_mask": edge_mask,
        "globals": glob,
        "graph_mask": graph_mask,
    }


def pack_dense(
    feats: Sequence[GraphFeatures], n_max: int | None = None, n_graphs: int | None = None
) -> dict[str, np.ndarray]:
    """The same graphs as a dense batch: each padded to ``n_max`` nodes, with an
    ``(n_graphs, n_max, n_max)`` edge-count matrix ``adj[g, receiver, sender]``.

    Message passing becomes batched matrix products instead of scatters: faster on a CPU
    for batches of similar, small graphs (inference sorts graphs by size); the flat
    :func:`pack` stays cheaper for large graphs (the products grow with the square of the
    node count) and mixed sizes. Both give the same encoder outputs.
    """
    b = len(feats)
    sizes = np.fromiter((f.num_nodes for f in feats), int, b)
    esizes = np.fromiter((len(f.senders) for f in feats), int, b)
    m = n_max or bucket(int(sizes.max()) if b else 1, 8)
    big_b = n_graphs or bucket(b, 8)
    if (b and m < sizes.max()) or big_b < b:
        raise ValueError("padded sizes too small for the batch")
    nodes = np.zeros((big_b, m, NODE_DIM), np.float32)
    mask = np.zeros((big_b, m), np.float32)
    glob = np.zeros((big_b, GLOBAL_DIM), np.float32)
    adj = np.zeros(big_b * m * m, np.float32)
    if b:
        gi = np.repeat(np.arange(b), sizes)
        pos = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        nodes[gi, pos] = np.concatenate([f.nodes for f in feats])
        mask[gi, pos] = 1.0
        glob[:b] = np.stack([f.globals for f in feats])
        ge = np.repeat(np.arange(b), esizes)
        rcv = np.concatenate([f.receivers for f in feats]).astype(np.int64)
        snd = np.concatenate([f.senders for f in feats]).astype(np.int64)
        adj = np.bincount((ge * m + rcv) * m + snd, minlength=big_b * m * m).astype(np.float32)
    graph_mask = np.zeros(big_b, np.float32)
    graph_mask[:b] = 1.0
    return {
        "nodes": nodes,
        "node_mask": mask,
        "adj": adj.reshape(big_b, m, m),
        "globals": glob,
        "graph_mask": graph_mask,
    }


class Encoder(nnx.Module):
    """Graph encoder: node embedding, ``layers`` rounds of two-way message passing with
    residual updates, mean+max pooling, fused with graph-level features into ``embed`` dims.

    Takes a flat batch (:func:`pack`, segment sums over edge lists) or a dense one
    (:func:`pack_dense`, adjacency products); the two compute the same function.
    """

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 3,
        embed: int = 32,
        scale_free: bool = False,
        *,
        rngs: nnx.Rngs,
    ):
        self.scale_free = scale_free
        self.glob_cols = FREE_GLOBALS if scale_free else NET_GLOBALS
        self.inp = nnx.Linear(NODE_DIM, hidden, rngs=rngs)
        self.mp = nnx.List([nnx.Linear(3 * hidden, hidden, rngs=rngs) for _ in range(layers)])
        self.norms = nnx.List([nnx.LayerNorm(hidden, rngs=rngs) for _ in range(layers)])
        self.glob = nnx.Linear(len(self.glob_cols), hidden, rngs=rngs)
        self.out1 = nnx.Linear(3 * hidden, hidden, rngs=rngs)
        self.out2 = nnx.Linear(hidden, embed, rngs=rngs)

    def __call__(self, b: dict[str, jax.Array]) -> jax.Array:
        if "adj" in b:
            return self._dense(b)
        n = b["nodes"].shape[0]
        g = b["globals"].shape[0]
        nmask = b["node_mask"][:, None]
        emask = b["edge_mask"][:, None]
        snd, rcv = b["senders"], b["receivers"]
        seg = b["node_graph"]
        count = jax.ops.segment_sum(b["node_mask"], seg, g + 1)[:, None]
        nodes = jnp.asarray(b["nodes"])
        if self.scale_free:
            nodes = _relative_scale(nodes, b, seg, count)
        deg_in = jax.ops.segment_sum(b["edge_mask"], rcv, n)[:, None]
        deg_out = jax.ops.segment_sum(b["edge_mask"], snd, n)[:, None]
        h = jax.nn.relu(self.inp(nodes)) * nmask
        for lin, norm in zip(self.mp, self.norms, strict=True):
            m_in = jax.ops.segment_sum(h[snd] * emask, rcv, n) / jnp.maximum(deg_in, 1.0)
            m_out = jax.ops.segment_sum(h[rcv] * emask, snd, n) / jnp.maximum(deg_out, 1.0)
            h = h + jax.nn.relu(norm(lin(jnp.concatenate([h, m_in, m_out], -1))))
            h = h * nmask
        total = jax.ops.segment_sum(h, seg, g + 1)[:g]
        count = count[:g]
        mean = total / jnp.maximum(count, 1.0)
        mx = jax.ops.segment_max(jnp.where(nmask > 0, h, -1e9), seg, g + 1)[:g]
        mx = jnp.where(count > 0, mx, 0.0)
        return self._readout(mean, mx, b["globals"])

    def _dense(self, b: dict[str, jax.Array]) -> jax.Array:
        mask = b["node_mask"][..., None]
        adj = b["adj"]
        count = mask.sum(1)
        nodes = jnp.asarray(b["nodes"])
        if self.scale_free:
            ch = (nodes[..., CHANNEL_COLS] * mask).sum(1) / jnp.maximum(count, 1.0)
            nodes = nodes.at[..., CHANNEL_COLS].add(-ch.mean(-1)[:, None, None])
            nodes = nodes.at[..., RES_COL].add(-b["globals"][:, INPUT_RES][:, None])
        deg_in = jnp.maximum(adj.sum(-1)[..., None], 1.0)
        deg_out = jnp.maximum(adj.sum(-2)[..., None], 1.0)
        adj_t = jnp.swapaxes(adj, 1, 2)
        h = jax.nn.relu(self.inp(nodes)) * mask
        for lin, norm in zip(self.mp, self.norms, strict=True):
            m_in = (adj @ h) / deg_in
            m_out = (adj_t @ h) / deg_out
            h = h + jax.nn.relu(norm(lin(jnp.concatenate([h, m_in, m_out], -1))))
            h = h * mask
        mean = h.sum(1) / jnp.maximum(count, 1.0)
        mx = jnp.where(mask > 0, h, -1e9).max(1)
        mx = jnp.where(count > 0, mx, 0.0)
        return self._readout(mean, mx, b["globals"])

    def _readout(self, mean: jax.Array, mx: jax.Array, glob: jax.Array) -> jax.Array:
        gl = jax.nn.relu(self.glob(glob[:, self.glob_cols]))
        z = jax.nn.relu(self.out1(jnp.concatenate([mean, mx, gl], -1)))
        return self.out2(z)


def _relative_scale(nodes: jax.Array, b: dict[str, jax.Array], seg, count) -> jax.Array:
    """Node features with channels relative to the graph's mean channel count and the
    resolution relative to the input's (log units): a 4x wider copy of a network, or
    another family's channel and resolution ranges, give the same encoder input."""
    ch = nodes[:, CHANNEL_COLS] * b["node_mask"][:, None]
    mean_ch = (jax.ops.segment_sum(ch, seg, count.shape[0]) / jnp.maximum(count, 1.0)).mean(
        -1, keepdims=True
    )
    in_res = jnp.concatenate([b["globals"][:, INPUT_RES], jnp.zeros(1)])
    # log_res is log2(res)/8 and log_input_res the same: their difference is scale-free.
    nodes = nodes.at[:, CHANNEL_COLS].add(-mean_ch[seg])
    return nodes.at[:, RES_COL].add(-in_res[seg])


class Centers(nnx.Variable):
    """Fuzzy c-means cluster centres in embedding space (not trained by gradients)."""


class Gennape(nnx.Module):
    """Encoder, a contrastive projection head, and ``heads`` MLP regressors whose outputs are
    averaged with the fuzzy c-means membership of the (gradient-stopped) embedding."""

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 3,
        embed: int = 32,
        heads: int = 4,
        head_hidden: int = 32,
        fuzzifier: float = 2.0,
        scale_free: bool = False,
        cost: str = "none",
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.encoder = Encoder(hidden, layers, embed, scale_free, rngs=rngs)
        self.head_cols = self.encoder.glob_cols
        self.cost_cols = COST_GLOBALS[cost]
        self.proj1 = nnx.Linear(embed, embed, rngs=rngs)
        self.proj2 = nnx.Linear(embed, embed, rngs=rngs)
        init = nnx.initializers.lecun_normal()
        self.w1 = nnx.Param(init(rngs.params(), (heads, embed + len(self.head_cols), head_hidden)))
        self.b1 = nnx.Param(jnp.zeros((heads, head_hidden)))
        self.w2 = nnx.Param(init(rngs.params(), (heads, head_hidden, 1))[..., 0])
        self.b2 = nnx.Param(jnp.zeros((heads,)))
        self.centers = Centers(jnp.zeros((heads, embed)))
        self.cost = nnx.Param(jnp.zeros((len(self.cost_cols),)))
        self.fuzzifier = fuzzifier

    def project(self, z: jax.Array) -> jax.Array:
        p = self.proj2(jax.nn.relu(self.proj1(z)))
        return p / (jnp.linalg.norm(p, axis=-1, keepdims=True) + 1e-8)

    def memberships(self, z: jax.Array) -> jax.Array:
        z = jax.lax.stop_gradient(z)
        d2 = ((z[:, None, :] - self.centers[...][None]) ** 2).sum(-1) + 1e-8
        inv = d2 ** (-1.0 / (self.fuzzifier - 1.0))
        return inv / inv.sum(-1, keepdims=True)

    def heads(self, z: jax.Array, glob: jax.Array) -> jax.Array:
        """Every head's output; the linear cost term (log FLOPs and/or log parameters, as
        chosen by ``cost``) is shared by all heads."""
        x = jnp.concatenate([z, glob[:, self.head_cols]], -1)
        h = jax.nn.relu(jnp.einsum("bi,kih->bkh", x, self.w1[...]) + self.b1[...])
        out = jnp.einsum("bkh,kh->bk", h, self.w2[...]) + self.b2[...]
        if self.cost_cols:
            out = out + (glob[:, self.cost_cols] @ self.cost[...])[:, None]
        return out

    def __call__(self, b: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(mean, per-head outputs, memberships)`` per graph, in standardised units."""
        z = self.encoder(b)
        ys = self.heads(z, b["globals"])
        u = self.memberships(z)
        return (u * ys).sum(-1), ys, u


def augment(b: dict[str, jax.Array], key: jax.Array, drop: float = 0.1, noise: float = 0.05):
    """A random view of a batch: node dropping, edge dropping and feature noise."""
    k1, k2, k3 = jax.random.split(key, 3)
    keep = jax.random.bernoulli(k1, 1.0 - drop, b["node_mask"].shape).astype(jnp.float32)
    nmask = b["node_mask"] * keep
    ekeep = jax.random.bernoulli(k2, 1.0 - drop, b["edge_mask"].shape).astype(jnp.float32)
    emask = b["edge_mask"] * ekeep * nmask[b["senders"]] * nmask[b["receivers"]]
    nodes = b["nodes"] + noise * jax.random.normal(k3, b["nodes"].shape) * nmask[:, None]
    return {**b, "nodes": nodes * nmask[:, None], "node_mask": nmask, "edge_mask": emask}
