"""Making a trained dense model elastic: rank its parts by importance, sort, retrain, search.

Minitron-style activation importance, measured on calibration windows of the training
split with the largest child (the dense model):

* embedding channels: the mean |value| of every norm's output on that channel, summed over
  the norms;
* attention heads: the mean L2 norm of the head's output (before the output projection);
* MLP units: the mean |activation|;
* layers: how much the bits per byte on the calibration windows grow when the layer is
  skipped.

:func:`sort_by_importance` permutes channels, heads and units so that the most important
come first, which leaves the dense model's function unchanged (norms, attention and MLPs are
equivariant to these permutations) and makes every nested child keep the most important
parts; layers cannot be reordered without changing the function, so their ranking becomes
the supernet's ``layer_rank``: a child of depth ``k`` keeps the ``k`` most important layers
in their order. The sorted model is then a supernet (``train.py`` retrains it briefly with
the sandwich rule, the dense model teaching the children) whose children a search scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from nas.search_spaces.gpt.supernet import Arch, GPTSupernet

from nas.corpus import TextCorpus
from nas.lm import Windows, bits_per_byte


@dataclass(frozen=True)
class Importance:
    """Importance scores (larger: more important).

    Attributes:
        channels: ``(D,)`` per embedding channel.
        heads: ``(L, H)`` per layer and head.
        units: ``(L, F)`` per layer and MLP unit.
        layers: ``(L,)`` bits per byte lost when the layer is skipped.
    """

    channels: np.ndarray
    heads: np.ndarray
    units: np.ndarray
    layers: np.ndarray


def largest(supernet: GPTSupernet, skip: int | None = None) -> Arch:
    """The dense model as an :class:`Arch`, optionally with layer ``skip`` left out."""
    space = supernet.space
    n = space.max_layers
    active = np.ones(n, bool)
    if skip is not None:
        active[skip] = False
    return Arch(
        jnp.int32(space.d_models[-1]),
        jnp.asarray(active),
        jnp.full(n, space.head_counts[-1], jnp.int32),
        jnp.full(n, space.ffns[-1], jnp.int32),
    )


def importance(
    supernet: GPTSupernet, corpus: TextCorpus, batches: int = 8, batch_size: int = 16, seed: int = 0
) -> Importance:
    """Importance of every channel, head, MLP unit and layer (see the module docstring)."""
    graphdef, state = nnx.split(supernet)
    collect = jax.jit(lambda st, x, arch: nnx.merge(graphdef, st)(x, arch, collect=True))
    logits = jax.jit(lambda st, x, arch: nnx.merge(graphdef, st)(x, arch))
    windows = Windows(corpus.train, supernet.space.context, batch_size, seed)
    xs, ys = zip(*(windows.next() for _ in range(batches)), strict=True)
    full = largest(supernet)
    sums: dict[str, np.ndarray] = {}
    for x in xs:
        _, stats = collect(state, jnp.asarray(x), full)
        for k, v in stats.items():
            sums[k] = sums.get(k, 0) + np.asarray(v) / batches
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)

    def bpb(arch: Arch) -> float:
        return bits_per_byte(lambda xb: logits(state, xb, arch), x_all, y_all, batch_size)

    base = bpb(full)
    layers = np.array(
        [bpb(largest(supernet, skip=i)) - base for i in range(supernet.space.max_layers)]
    )
    return Importance(
        channels=sums["norm_abs"].sum(0) + sums["final_abs"],
        heads=sums["head_norm"],
        units=sums["unit_abs"],
        layers=layers,
    )


def sort_by_importance(supernet: GPTSupernet, imp: Importance) -> GPTSupernet:
    """Permute ``supernet`` in place so the most important parts come first (see the module
    docstring); returns it."""
    a = {name: np.array(v[...]) for name, v in nnx.state(supernet, nnx.Param).items()}
    c = np.argsort(-imp.channels, kind="stable")
    for name in ("tok", "pos", "lnf_scale", "lnf_bias"):
        a[name] = a[name][..., c]
    for name in ("ln1_scale", "ln1_bias", "ln2_scale", "ln2_bias", "bo", "b_down", "wo", "w_down"):
        a[name] = a[name][..., c]
    for name in ("wq", "wk", "wv", "w_up"):
        a[name] = a[name][:, c, :]
    hd = supernet.space.head_dim
    for layer in range(supernet.space.max_layers):
        h = np.argsort(-imp.heads[layer], kind="stable")
        cols = (h[:, None] * hd + np.arange(hd)).ravel()
        for name in ("wq", "wk", "wv"):
            a[name][layer] = a[name][layer][:, cols]
        for name in ("bq", "bk", "bv"):
            a[name][layer] = a[name][layer][cols]
        a["wo"][layer] = a["wo"][layer][cols, :]
        u = np.argsort(-imp.units[layer], kind="stable")
        a["w_up"][layer] = a["w_up"][layer][:, u]
        a["b_up"][layer] = a["b_up"][layer][u]
        a["w_down"][layer] = a["w_down"][layer][u, :]
    for name, value in a.items():
        getattr(supernet, name)[...] = jnp.asarray(value)
    order = np.argsort(-imp.layers, kind="stable")  # most important first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    supernet.layer_rank[...] = jnp.asarray(rank, jnp.int32)
    return supernet
