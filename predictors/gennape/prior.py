"""A compute prior for graph predictors: effective FLOPs and spatial depth.

Across benchmark families the multiply-accumulate count is the most portable single signal
of accuracy (Kendall tau 0.34 to 0.58 on NB101, NB301, NB201 and NAS-Bench-Macro), but not
every multiply-add is worth the same: a 1x1 convolution's MACs buy less accuracy than a 3x3
convolution's. The prior scores a network by its *effective* FLOPs and its depth::

    score = log sum_v macs_v * exp(w . phi_v)  +  beta * ln(1 + spatial depth)

over the compact graph's conv and dense nodes ``v``, where ``phi_v`` is the node's op kind
and kernel/stride/dilation/activation flags, and the spatial depth is the longest
input-output path counted in convolutions larger than 1x1 (the ``spatial_depth`` global of
:mod:`nas.predictors.features`). The compact graph holds only live nodes, so a branch that never
reaches the output (an NB201 conv feeding a node whose only exit is ``none``) counts
nothing. With ``w = 0`` and ``beta = 0`` the score is the log of the live MACs (``log
FLOPs`` wherever nothing is dead), and an L2 penalty pulls the weights back towards that;
they are fitted with a pairwise ranking loss within each training family.

Depth is the second portable signal: alone it ranks NB101 at tau 0.69, NB201 at 0.62 and
NAS-Bench-Macro at 0.70 (FLOPs: 0.52, 0.58, 0.56; NB301, whose cells all have the same
number of ops, 0.17). Fitted on NB101 + NB301 only, ``beta`` comes out at about 0.8 and the
prior ranks NB201 at 0.635 and NAS-Bench-Macro at 0.621 without ever seeing them
(``benchmarks/predictors.py``, part ``zeroshot``). The prior has about twenty numbers,
which is why it transfers to families the predictor never saw where a graph network trained
on two families does not (part ``heldout``, the ``+prior`` configurations).

:class:`~nas.predictors.gennape.predictor.GennapePredictor` adds its graph network's output
to this prior (option ``prior``), so that the network only has to learn what compute does
not explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from nas.predictors.features import (
    CATEGORIES,
    GLOBALS,
    NUMERIC,
    SPATIAL_DEPTH_SCALE,
    GraphFeatures,
)

_COL = {name: len(CATEGORIES) + i for i, name in enumerate(NUMERIC)}
_KINDS = ("conv", "conv_1x1", "conv_dw", "conv_group", "dense")
_FLAGS = ("kernel", "stride2", "dilated", "pre_act", "post_act", "pre_bn")
PHI_NAMES = _KINDS + _FLAGS
PHI_COLS = tuple(CATEGORIES.index(c) for c in _KINDS) + tuple(_COL[f] for f in _FLAGS)
_LOG_MACS = 9.0 * np.log(10.0)  # GLOBALS' log_flops is log10(MACs) / 9
_FLOPS = GLOBALS.index("log_flops")
_DEPTH = GLOBALS.index("spatial_depth")
_LOG_DEPTH = SPATIAL_DEPTH_SCALE * np.log(2.0)  # spatial_depth is log2(1 + d) / scale


def _arrays(
    feats: Sequence[GraphFeatures], pad: int = 1, rows: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded ``(phi, weight, log_macs, log_depth)``: ``weight`` is a node's share of the
    network's MACs times the number of copies its collapsed block stands for; ``log_depth``
    is ``ln(1 + longest path in spatial convs)``. Nodes are padded (with zero weight) to a
    multiple of ``pad``, and the networks to ``rows`` (zero rows)."""
    m = max((f.num_nodes for f in feats), default=1)
    m = -(-m // pad) * pad
    n = max(rows, len(feats))
    phi = np.zeros((n, m, len(PHI_COLS)), np.float32)
    share = np.zeros((n, m), np.float32)
    for i, f in enumerate(feats):
        k = f.num_nodes
        phi[i, :k] = f.nodes[:, PHI_COLS]
        copies = np.exp2(3.0 * f.nodes[:, _COL["repeat"]])
        share[i, :k] = f.nodes[:, _COL["flops_share"]] / 10.0 * copies
    log_macs = np.zeros(n, np.float32)
    log_depth = np.zeros(n, np.float32)
    log_macs[: len(feats)] = np.array([f.globals[_FLOPS] for f in feats], np.float32) * _LOG_MACS
    log_depth[: len(feats)] = np.array([f.globals[_DEPTH] for f in feats], np.float32) * _LOG_DEPTH
    return phi, share, log_macs, log_depth


def _score(
    theta: jax.Array, phi: jax.Array, share: jax.Array, log_macs: jax.Array, log_depth: jax.Array
) -> jax.Array:
    w, depth = theta[:-1], theta[-1]
    total = jnp.sum(share * jnp.exp(phi @ w), 1)
    # A network without conv or dense nodes has no MACs share: its score is its log MACs.
    return log_macs + jnp.log(jnp.where(total > 0, total, 1.0)) + depth * log_depth


def _ranking_loss(theta, arrays, members, y, l2) -> jax.Array:
    """Pairwise logistic ranking loss within each group, plus an L2 pull towards log FLOPs.

    The model ``P(i beats j) = sigmoid(exp(t) * (s_i - s_j))`` has its own scale ``t`` (the
    last entry of ``theta``): the ranking does not depend on it, but the weights that fit
    best do, and a fixed scale would bias them towards whatever spread log MACs happen to
    have.
    """
    s = _score(theta[:-1], *arrays)
    total = 0.0
    for m in members:
        sm, ym = s[m], y[m]
        pair = (ym[:, None] > ym[None, :] + 1e-6).astype(jnp.float32)
        terms = jax.nn.softplus(-jnp.exp(theta[-1]) * (sm[:, None] - sm[None, :]))
        total = total + (pair * terms).sum() / jnp.maximum(pair.sum(), 1.0)
    return total / max(len(members), 1) + l2 * jnp.sum(theta[:-1] ** 2)


_score_jit = jax.jit(_score)

SCORE_ROWS = 64
"""Networks per scoring block (:meth:`EffectiveFlops.score`)."""

_ADAM = optax.adam(0.05)


@jax.jit
def _fit_step(theta, state, arrays, members, y, mask, l2):
    """One Adam step of the ranking fit (data as arguments: compiled once per data shape,
    not once per fit)."""
    upd, state = _ADAM.update(jax.grad(_ranking_loss)(theta, arrays, members, y, l2) * mask, state)
    return optax.apply_updates(theta, upd), state


class EffectiveFlops:
    """The effective-FLOPs prior (see the module docstring).

    Args:
        l2: penalty on the fitted weights (towards plain log FLOPs).
        steps: full-batch Adam steps of the ranking fit.
        ops: fit a weight per op kind and flag.
        depth: fit the weight of the spatial-depth term.
    """

    def __init__(
        self, l2: float = 1e-2, steps: int = 300, ops: bool = True, depth: bool = False
    ) -> None:
        self.l2, self.steps, self.ops, self.depth = l2, steps, ops, depth
        self.w = np.zeros(len(PHI_COLS), np.float32)
        self.depth_weight = 0.0
        self.slope, self.center = 1.0, 0.0

    def _theta(self) -> jax.Array:
        return jnp.asarray(np.append(self.w, np.float32(self.depth_weight)))

    def score(self, feats: Sequence[GraphFeatures]) -> np.ndarray:
        """Raw scores (log effective MACs plus the depth term); higher is predicted better."""
        out = np.zeros(len(feats), np.float32)
        if not len(feats):
            return out
        # A network's score must not depend on the networks scored with it (XLA rounds a
        # reduction by its shape): each is scored in a block of SCORE_ROWS networks padded
        # to its own node count rounded up to 16 (few shapes, few compilations).
        theta = self._theta()
        size = np.array([-(-max(f.num_nodes, 1) // 16) * 16 for f in feats])
        for m in np.unique(size):
            same = np.flatnonzero(size == m)
            for k in range(0, len(same), SCORE_ROWS):
                part = same[k : k + SCORE_ROWS]
                arrays = _arrays([feats[i] for i in part], pad=int(m), rows=SCORE_ROWS)
                out[part] = np.asarray(_score_jit(theta, *map(jnp.asarray, arrays)))[: len(part)]
        return out

    def __call__(self, feats: Sequence[GraphFeatures]) -> np.ndarray:
        """The prior in standardised-accuracy units: ``slope * (score - center)``."""
        return (self.slope * (self.score(feats) - self.center)).astype(np.float32)

    def fit(
        self, feats: Sequence[GraphFeatures], y: np.ndarray, groups: np.ndarray, seed: int = 0
    ) -> EffectiveFlops:
        """Fit the op weights by a pairwise ranking loss within each group, then the slope
        and centre that map scores to per-group standardised accuracy (``y`` is already
        standardised per group)."""
        y = np.asarray(y, np.float32)
        groups = np.asarray(groups)
        arrays = tuple(map(jnp.asarray, _arrays(feats)))
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        members = [m if len(m) <= 1500 else rng.choice(m, 1500, replace=False) for m in members]
        members = [jnp.asarray(m) for m in members if len(m) > 1]
        yj = jnp.asarray(y)

        # theta: op weights, depth weight, log temperature (see _ranking_loss).
        mask = [float(self.ops)] * len(PHI_COLS) + [float(self.depth), 1.0]
        theta = jnp.zeros(len(PHI_COLS) + 2, jnp.float32)
        if members and self.steps > 0 and (self.ops or self.depth):
            state = _ADAM.init(theta)
            l2, mask = jnp.float32(self.l2), jnp.asarray(mask)
            for _ in range(self.steps):
                theta, state = _fit_step(theta, state, arrays, tuple(members), yj, mask, l2)
        theta = np.asarray(theta, np.float32)
        self.w, self.depth_weight = theta[:-2], float(theta[-2])
        s = self.score(feats)
        sc = s.copy()
        for g in np.unique(groups):
            sel = groups == g
            sc[sel] -= s[sel].mean()
        var = float((sc**2).sum())
        self.slope = max(float((sc * y).sum()) / var, 0.0) if var > 1e-12 else 0.0
        self.center = float(s.mean())
        return self

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"slope": self.slope, "center": self.center, "depth": self.depth_weight}
        return meta, {"prior.w": self.w}

    @classmethod
    def restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EffectiveFlops:
        p = cls()
        p.w = np.asarray(arrays["prior.w"], np.float32)
        p.slope, p.center = float(meta["slope"]), float(meta["center"])
        p.depth_weight = float(meta.get("depth", 0.0))  # saved before the depth term: none
        return p

    def weights(self) -> dict[str, float]:
        """The fitted op weights by name (``exp(weight)`` multiplies that op's MACs)."""
        return {n: float(v) for n, v in zip(PHI_NAMES, self.w, strict=True)}
