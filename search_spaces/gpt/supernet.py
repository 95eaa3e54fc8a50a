"""The ``gpt`` weight-sharing supernet: every child a nested slice of one set of weights.

:class:`GPTSupernet` holds the largest child's weights, layers stacked on a leading axis.
Its forward takes a child as traced arrays (:class:`Arch`: width, active layers, heads
and MLP units per layer) and masks what the child does not use: channels beyond its width,
heads beyond its count, MLP units beyond its width, layers beyond its depth (skipped).
Layer norms take their statistics over the child's channels only, so the masked forward
computes exactly what the child computes alone, and one compiled program serves every
child (training and scoring compile once).

Training (:class:`SupernetTrainer`) is the sandwich rule with in-place distillation
(BigNAS): each step trains the largest child on the next bytes and the smallest plus
``random_children`` random children on the largest child's predicted distribution (its
logits with the gradient stopped), the losses summed into one update, all in one compiled
step. :meth:`GPTSupernet.extract` writes a child as a standalone IR-built model
(:class:`nas.model.GraphModel`) whose outputs equal the supernet's for that child.

Depth is nested by ``layer_rank``: a child of depth ``k`` runs the ``k`` layers of lowest
rank in their order. A trained supernet's rank is the layer order (the first ``k`` layers);
a supernet made elastic from a trained dense model ranks layers by importance
(``compress.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from nas.search_spaces.gpt.space import GPTGenotype, GPTSpace

from nas.errors import DataError, GraphError
from nas.ops import OPS
from nas.ops.attention import attention

EPS = 1e-5  # GPT-2's LayerNorm epsilon, as in the child graphs


class Arch(NamedTuple):
    """A child as arrays (what the compiled forward reads)."""

    d: jax.Array  # int32 scalar: embedding width
    active: jax.Array  # bool (L,): the layer runs
    heads: jax.Array  # int32 (L,): heads of each layer
    ffn: jax.Array  # int32 (L,): MLP units of each layer


def stack_archs(archs: Sequence[Arch]) -> Arch:
    """Several children as one :class:`Arch` with a leading axis (for a scan)."""
    return Arch(*(jnp.stack(parts) for parts in zip(*archs, strict=True)))


def _masked_norm(x, scale, bias, mask, width):
    """LayerNorm over the first ``width`` channels (``mask``), zero elsewhere."""
    mean = (x * mask).sum(-1, keepdims=True) / width
    centred = (x - mean) * mask
    var = (centred**2).sum(-1, keepdims=True) / width
    return (centred * jax.lax.rsqrt(var + EPS) * scale + bias) * mask


_LAYER_WEIGHTS = (
    "ln1_scale",
    "ln1_bias",
    "wq",
    "bq",
    "wk",
    "bk",
    "wv",
    "bv",
    "wo",
    "bo",
    "ln2_scale",
    "ln2_bias",
    "w_up",
    "b_up",
    "w_down",
    "b_down",
)


class LayerRank(nnx.Variable):
    """Which layers a shallower child keeps (state, not a trained parameter)."""


class GPTSupernet(nnx.Module):
    """The largest child's weights, shared by every child of ``space``.

    Args:
        space: the ``gpt`` space whose children it serves.
        seed: initialisation (normal with std 0.02, output projections scaled by
            ``1 / sqrt(2 * layers)`` as GPT-2 does; norms 1 and 0; biases 0).
    """

    def __init__(self, space: GPTSpace, seed: int = 0) -> None:
        self.space = space
        d, n_layers, hd = space.d_models[-1], space.max_layers, space.head_dim
        w = space.head_counts[-1] * hd
        f = space.ffns[-1]
        key = iter(jax.random.split(jax.random.key(seed), 8))
        std, out_std = 0.02, 0.02 / np.sqrt(2 * n_layers)

        def normal(shape, s=std):
            return nnx.Param(jax.random.normal(next(key), shape) * s)

        def const(shape, v):
            return nnx.Param(jnp.full(shape, v, jnp.float32))

        self.tok = normal((space.vocab, d))
        self.pos = normal((space.context, d), 0.01)
        self.ln1_scale, self.ln1_bias = const((n_layers, d), 1.0), const((n_layers, d), 0.0)
        self.wq, self.bq = normal((n_layers, d, w)), const((n_layers, w), 0.0)
        self.wk, self.bk = normal((n_layers, d, w)), const((n_layers, w), 0.0)
        self.wv, self.bv = normal((n_layers, d, w)), const((n_layers, w), 0.0)
        self.wo, self.bo = normal((n_layers, w, d), out_std), const((n_layers, d), 0.0)
        self.ln2_scale, self.ln2_bias = const((n_layers, d), 1.0), const((n_layers, d), 0.0)
        self.w_up, self.b_up = normal((n_layers, d, f)), const((n_layers, f), 0.0)
        self.w_down, self.b_down = normal((n_layers, f, d), out_std), const((n_layers, d), 0.0)
        self.lnf_scale, self.lnf_bias = const((d,), 1.0), const((d,), 0.0)
        self.layer_rank = LayerRank(jnp.arange(n_layers, dtype=jnp.int32))

    # ------------------------------------------------------------------ children

    def layers_of(self, genotype: GPTGenotype) -> list[int]:
        """The supernet layers a child runs, in order (its depth's lowest ranks)."""
        chosen = np.argsort(np.asarray(self.layer_rank[...]), kind="stable")[: genotype.depth]
        return sorted(int(i) for i in chosen)

    def encode(self, genotype: GPTGenotype) -> Arch:
        """``genotype`` as the arrays the compiled forward reads."""
        g = self.space._check(genotype)
        n = self.space.max_layers
        active = np.zeros(n, bool)
        heads = np.zeros(n, np.int32)
        ffn = np.zeros(n, np.int32)
        for j, layer in enumerate(self.layers_of(g)):
            active[layer], heads[layer], ffn[layer] = True, g.heads[j], g.ffn[j]
        return Arch(jnp.int32(g.d_model), jnp.asarray(active), jnp.asarray(heads), jnp.asarray(ffn))

    def __call__(self, ids: jax.Array, arch: Arch, collect: bool = False) -> Any:
        """Logits ``[B, T, 256]`` of the child ``arch`` for byte ids ``[B, T]``.

        With ``collect``, also the activation statistics that rank channels, heads and MLP
        units by importance (``compress.py``), per layer: ``norm_abs`` (mean |x| of both
        norms' outputs per channel), ``head_norm`` (mean L2 norm of each head's output),
        ``unit_abs`` (mean |activation| of each MLP unit); and ``final_abs`` for the last
        norm."""
        hd = self.space.head_dim
        width, heads_max = self.wq.shape[-1], self.wq.shape[-1] // hd
        dmask = (jnp.arange(self.tok.shape[1]) < arch.d).astype(jnp.float32)
        d = arch.d.astype(jnp.float32)
        x = (self.tok[...][ids] + self.pos[: ids.shape[1]]) * dmask
        layers = {name: getattr(self, name)[...] for name in _LAYER_WEIGHTS}

        def layer(x, inputs):
            p, active, h, f = inputs
            hmask = (jnp.arange(width) // hd < h).astype(jnp.float32)
            fmask = (jnp.arange(p["w_up"].shape[-1]) < f).astype(jnp.float32)
            a = _masked_norm(x, p["ln1_scale"], p["ln1_bias"], dmask, d)
            q, k, v = (a @ p[f"w{c}"] + p[f"b{c}"] for c in "qkv")
            att = attention(q, k, v, heads_max, heads_max, True) * hmask
            y = x + (att @ p["wo"] + p["bo"]) * dmask
            m = _masked_norm(y, p["ln2_scale"], p["ln2_bias"], dmask, d)
            u = jax.nn.gelu(m @ p["w_up"] + p["b_up"], approximate=True) * fmask
            y = y + (u @ p["w_down"] + p["b_down"]) * dmask
            stats = None
            if collect:
                per_head = att.reshape(*att.shape[:2], heads_max, hd)
                stats = {
                    "norm_abs": jnp.abs(a).mean((0, 1)) + jnp.abs(m).mean((0, 1)),
                    "head_norm": jnp.sqrt((per_head**2).sum(-1)).mean((0, 1)),
                    "unit_abs": jnp.abs(u).mean((0, 1)),
                }
            return jnp.where(active, y, x), stats

        x, stats = jax.lax.scan(layer, x, (layers, arch.active, arch.heads, arch.ffn))
        x = _masked_norm(x, self.lnf_scale[...], self.lnf_bias[...], dmask, d)
        logits = x @ self.tok[...].T
        if collect:
            return logits, {**stats, "final_abs": jnp.abs(x).mean((0, 1))}
        return logits

    # ------------------------------------------------------------------ extraction

    def child_weights(self, genotype: GPTGenotype) -> dict[int, dict[str, np.ndarray]]:
        """Node id -> flax variable -> array of the child's IR graph (its weights)."""
        g = self.space._check(genotype)
        graph = self.space.to_graph(g)
        layers = self.layers_of(g)
        hd, d = self.space.head_dim, g.d_model
        arr = {name: np.asarray(v[...]) for name, v in nnx.state(self, nnx.Param).items()}
        out: dict[int, dict[str, np.ndarray]] = {}
        for n in graph.g:
            if not OPS[graph.op(n)].parametric:
                continue
            scope = graph.g.nodes[n].get("scope", "")
            w = _slice(arr, scope, layers, g, hd, d)
            if w is None:  # pragma: no cover - the space's graphs are built here
                raise GraphError(f"gpt supernet: no weights for node {n} ({scope})")
            out[n] = w
        return out

    def extract(self, genotype: GPTGenotype):
        """The child as a standalone model built from its IR graph, with its weights."""
        from nas.model import GraphModel

        graph = self.space.to_graph(self.space._check(genotype))
        return GraphModel(graph, rngs=nnx.Rngs(0), weights=self.child_weights(genotype))

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Weights and layer ranks as safetensors (``metadata``: JSON values)."""
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: np.asarray(v[...]) for name, v in nnx.state(self, nnx.Param).items()}
        tensors["layer_rank"] = np.asarray(self.layer_rank[...], np.int32)
        meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
        meta["space"] = json.dumps(self.space.settings())
        save_file(tensors, str(path), metadata=meta)
        return path

    def load(self, path: str | Path) -> GPTSupernet:
        """Read a file written by :meth:`save` (for a supernet of the same space)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.exists():
            raise DataError(f"supernet file {path} does not exist")
        with safe_open(str(path), "numpy") as f:
            if json.loads(f.metadata().get("space", "null")) != self.space.settings():
                raise DataError(f"{path} holds a supernet of another gpt space")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        for name, var in nnx.state(self, nnx.Param).items():
            if name not in tensors or tensors[name].shape != var[...].shape:
                raise DataError(f"{path}: tensor {name!r} is missing or misshapen")
            getattr(self, name)[...] = jnp.asarray(tensors[name])
        self.layer_rank[...] = jnp.asarray(tensors["layer_rank"], jnp.int32)
        return self


def _slice(arr, scope: str, layers: list[int], g: GPTGenotype, hd: int, d: int):
    """One child node's weights cut from the supernet's arrays, by the node's scope."""
    if scope == "embed/tokens":
        return {"embedding": arr["tok"][:, :d]}
    if scope == "embed/positions":
        return {"embedding": arr["pos"][:, :d]}
    if scope == "head/norm":
        return {"scale": arr["lnf_scale"][:d], "bias": arr["lnf_bias"][:d]}
    parts = scope.split("/")
    if len(parts) != 3 or not parts[0].startswith("block"):
        return None
    j = int(parts[0][5:])
    layer, w, f = layers[j], g.heads[j] * hd, g.ffn[j]
    cut = {
        ("attn", "norm"): lambda: {
            "scale": arr["ln1_scale"][layer, :d],
            "bias": arr["ln1_bias"][layer, :d],
        },
        ("attn", "q"): lambda: {"kernel": arr["wq"][layer, :d, :w], "bias": arr["bq"][layer, :w]},
        ("attn", "k"): lambda: {"kernel": arr["wk"][layer, :d, :w], "bias": arr["bk"][layer, :w]},
        ("attn", "v"): lambda: {"kernel": arr["wv"][layer, :d, :w], "bias": arr["bv"][layer, :w]},
        ("attn", "o"): lambda: {"kernel": arr["wo"][layer, :w, :d], "bias": arr["bo"][layer, :d]},
        ("mlp", "norm"): lambda: {
            "scale": arr["ln2_scale"][layer, :d],
            "bias": arr["ln2_bias"][layer, :d],
        },
        ("mlp", "up"): lambda: {
            "kernel": arr["w_up"][layer, :d, :f],
            "bias": arr["b_up"][layer, :f],
        },
        ("mlp", "down"): lambda: {
            "kernel": arr["w_down"][layer, :f, :d],
            "bias": arr["b_down"][layer, :d],
        },
    }.get((parts[1], parts[2]))
    if cut is None:
        return None
    return {k: np.ascontiguousarray(v) for k, v in cut().items()}
