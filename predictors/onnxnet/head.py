"""ONNX-Net's ranking heads: an ensemble of small MLPs over the pooled text features, each
scoring ``a * prior + learned`` and trained with a pairwise logistic loss (RankNet)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

HEAD_ROWS = 64
"""Rows of every head evaluation at prediction (padded): one matrix-product shape, so that
a prediction does not depend on the other architectures of its batch."""


def init_heads(key: jax.Array, k: int, d: int, h: int) -> dict[str, jax.Array]:
    """``k`` heads over ``d`` features with ``h`` hidden units; prior scales ``a`` start at 1."""
    k1, k2 = jax.random.split(key)
    return {
        "w1": jax.random.normal(k1, (k, d, h)) / np.sqrt(d),
        "b1": jnp.zeros((k, h)),
        "w2": jax.random.normal(k2, (k, h)) / np.sqrt(h),
        "b2": jnp.zeros((k,)),
        "a": jnp.ones((k,)),
    }


def learned(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """``(heads, n)`` learned parts of the ranking scores."""
    hid = jax.nn.gelu(jnp.einsum("nd,kdh->knh", x, p["w1"]) + p["b1"][:, None])
    return jnp.einsum("knh,kh->kn", hid, p["w2"]) + p["b2"][:, None]


def scores(p: dict[str, jax.Array], x: jax.Array, prior: jax.Array) -> jax.Array:
    """``(heads, n)`` ranking scores: each head's scaled prior plus its learned part."""
    return p["a"][:, None] * prior[None] + learned(p, x)


@functools.partial(jax.jit, static_argnames=("opt",))
def step(p, state, x, prior, i, j, key_w, opt):
    """One optimiser step of the weighted pairwise loss: ``i`` ranks above ``j`` (per head)."""

    def loss_fn(p):
        s = scores(p, x, prior)  # (k, n)
        diff = jnp.take_along_axis(s, i, 1) - jnp.take_along_axis(s, j, 1)  # i better than j
        return jnp.mean(key_w * jax.nn.softplus(-diff))

    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss


_learned_jit = jax.jit(learned)


def learned_rows(params: dict[str, jax.Array], x: np.ndarray) -> np.ndarray:
    """:func:`learned` in blocks of exactly :data:`HEAD_ROWS` rows (zero-padded): XLA
    blocks a product by its shape, so a batch of another size would round each row's
    score differently in the last place."""
    out = [np.zeros((len(params["b2"]), 0), np.float32)]
    for i in range(0, len(x), HEAD_ROWS):
        part = x[i : i + HEAD_ROWS]
        block = np.zeros((HEAD_ROWS, x.shape[1]), np.float32)
        block[: len(part)] = part
        out.append(np.asarray(_learned_jit(params, jnp.asarray(block)))[:, : len(part)])
    return np.concatenate(out, 1)
