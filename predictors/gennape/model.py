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

from predictors.features import GLOBAL_DIM, NODE_DIM, GraphFeatures


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


class Encoder(nnx.Module):
    """Graph encoder: node embedding, ``layers`` rounds of two-way message passing with
    residual updates, mean+max pooling, fused with graph-level features into ``embed`` dims."""

    def __init__(self, hidden: int = 64, layers: int = 3, embed: int = 32, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(NODE_DIM, hidden, rngs=rngs)
        self.mp = nnx.List([nnx.Linear(3 * hidden, hidden, rngs=rngs) for _ in range(layers)])
        self.norms = nnx.List([nnx.LayerNorm(hidden, rngs=rngs) for _ in range(layers)])
        self.glob = nnx.Linear(GLOBAL_DIM, hidden, rngs=rngs)
        self.out1 = nnx.Linear(3 * hidden, hidden, rngs=rngs)
        self.out2 = nnx.Linear(hidden, embed, rngs=rngs)

    def __call__(self, b: dict[str, jax.Array]) -> jax.Array:
        n = b["nodes"].shape[0]
        g = b["globals"].shape[0]
        nmask = b["node_mask"][:, None]
        emask = b["edge_mask"][:, None]
        snd, rcv = b["senders"], b["receivers"]
        deg_in = jax.ops.segment_sum(b["edge_mask"], rcv, n)[:, None]
        deg_out = jax.ops.segment_sum(b["edge_mask"], snd, n)[:, None]
        h = jax.nn.relu(self.inp(b["nodes"])) * nmask
        for lin, norm in zip(self.mp, self.norms, strict=True):
            m_in = jax.ops.segment_sum(h[snd] * emask, rcv, n) / jnp.maximum(deg_in, 1.0)
            m_out = jax.ops.segment_sum(h[rcv] * emask, snd, n) / jnp.maximum(deg_out, 1.0)
            h = h + jax.nn.relu(norm(lin(jnp.concatenate([h, m_in, m_out], -1))))
            h = h * nmask
        seg = b["node_graph"]
        total = jax.ops.segment_sum(h, seg, g + 1)[:g]
        count = jax.ops.segment_sum(b["node_mask"], seg, g + 1)[:g, None]
        mean = total / jnp.maximum(count, 1.0)
        mx = jax.ops.segment_max(jnp.where(nmask > 0, h, -1e9), seg, g + 1)[:g]
        mx = jnp.where(count > 0, mx, 0.0)
        gl = jax.nn.relu(self.glob(b["globals"]))
        z = jax.nn.relu(self.out1(jnp.concatenate([mean, mx, gl], -1)))
        return self.out2(z)


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
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.encoder = Encoder(hidden, layers, embed, rngs=rngs)
        self.proj1 = nnx.Linear(embed, embed, rngs=rngs)
        self.proj2 = nnx.Linear(embed, embed, rngs=rngs)
        init = nnx.initializers.lecun_normal()
        self.w1 = nnx.Param(init(rngs.params(), (heads, embed + GLOBAL_DIM, head_hidden)))
        self.b1 = nnx.Param(jnp.zeros((heads, head_hidden)))
        self.w2 = nnx.Param(init(rngs.params(), (heads, head_hidden, 1))[..., 0])
        self.b2 = nnx.Param(jnp.zeros((heads,)))
        self.centers = Centers(jnp.zeros((heads, embed)))
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
        x = jnp.concatenate([z, glob], -1)
        h = jax.nn.relu(jnp.einsum("bi,kih->bkh", x, self.w1[...]) + self.b1[...])
        return jnp.einsum("bkh,kh->bk", h, self.w2[...]) + self.b2[...]

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
