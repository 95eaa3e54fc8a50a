"""FBNetV3-style pretraining of a ranking MLP on free statistics of unlabelled architectures.

FBNetV3 (Dai et al. 2021) pretrains its accuracy predictor's encoder to predict statistics
that cost nothing to compute (FLOPs, parameters) before it fits accuracy. Here the encoder is
an MLP over GRAF features (:mod:`nas.predictors.graf`) ranked within each family. It is
pretrained to predict the within-family ranks of free statistics (exact parameters, live
MACs, spatial depth and zero-cost proxies) of unlabelled architectures sampled from every
space, including the family it will later rank (its architectures are free; only their
labels are not), and then fine-tuned, all weights, with a pairwise ranking loss on accuracy
within each labelled family: accuracy scales differ across families, orders do not.

The statistics it learns to predict are left out of its inputs (:data:`STATS`), so
pretraining has something to learn: how structure determines compute.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

STATS = ("log_params", "log_flops", "log_live_macs", "spatial_depth", "longest_spatial_path")
"""GRAF columns that are pretraining targets and therefore not inputs."""


@dataclass(frozen=True)
class MLPConfig:
    """Sizes and schedule of :class:`RankMLP` (defaults: what the LOFO benchmark uses)."""

    hidden: tuple[int, ...] = (128, 64)
    pretrain_steps: int = 1500
    finetune_steps: int = 600
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-3


def _init(key: jax.Array, sizes: Sequence[int]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _trunk(layers, x: jax.Array) -> jax.Array:
    for w, b in layers:
        x = jax.nn.gelu(x @ w + b)
    return x


def _stats_loss(params, x, t, mask):
    out = _trunk(params["trunk"], x) @ params["stats"][0] + params["stats"][1]
    return jnp.sum(mask * (out - t) ** 2) / jnp.maximum(mask.sum(), 1.0)


def _rank_loss(params, x, y, fam, offset):
    """RankNet's logistic loss over every pair of the batch from the same family, for the
    score ``offset + output``."""
    o = offset + (_trunk(params["trunk"], x) @ params["acc"][0] + params["acc"][1])[:, 0]
    same = (fam[:, None] == fam[None, :]) & (y[:, None] > y[None, :])
    loss = jax.nn.softplus(-(o[:, None] - o[None, :]))
    return jnp.sum(jnp.where(same, loss, 0.0)) / jnp.maximum(same.sum(), 1.0)


class RankMLP:
    """An MLP scorer: optional pretraining on free statistics, then pairwise ranking."""

    def __init__(self, n_in: int, n_stats: int, seed: int, config: MLPConfig | None = None):
        self.config = config or MLPConfig()
        k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
        sizes = (n_in, *self.config.hidden)
        self.params = {
            "trunk": _init(k1, sizes),
            "stats": _init(k2, (sizes[-1], max(n_stats, 1)))[0],
            "acc": _init(k3, (sizes[-1], 1))[0],
        }
        self.rng = np.random.default_rng(seed)

    def _train(self, loss, steps: int, draw) -> None:
        opt = optax.adamw(
            optax.cosine_decay_schedule(self.config.lr, steps),
            weight_decay=self.config.weight_decay,
        )
        state = opt.init(self.params)

        @jax.jit
        def step(params, state, *batch):
            value, grads = jax.value_and_grad(loss)(params, *batch)
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state, value

        for _ in range(steps):
            self.params, state, _ = step(self.params, state, *draw())

    def pretrain(self, x: np.ndarray, stats: np.ndarray) -> RankMLP:
        """Fit the trunk and a statistics head to ``stats`` (NaN: unknown, not counted)."""
        mask = np.isfinite(stats).astype(np.float32)
        t = np.nan_to_num(stats).astype(np.float32)
        x = x.astype(np.float32)

        def draw():
            i = self.rng.integers(0, len(x), self.config.batch)
            return x[i], t[i], mask[i]

        self._train(_stats_loss, self.config.pretrain_steps, draw)
        return self

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        families: Sequence[str],
        offset: np.ndarray | None = None,
    ) -> RankMLP:
        """Fine-tune every weight to rank ``y`` within each family; with ``offset`` (e.g.
        the compute prior's score) the output learns only what ``offset + output`` needs
        beyond it."""
        fam = np.unique(np.asarray(list(families)), return_inverse=True)[1].astype(np.int32)
        x, y = x.astype(np.float32), np.asarray(y, np.float32)
        off = np.zeros(len(x), np.float32) if offset is None else offset.astype(np.float32)

        def draw():
            i = self.rng.integers(0, len(x), self.config.batch)
            return x[i], y[i], fam[i], off[i]

        self._train(_rank_loss, self.config.finetune_steps, draw)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        out = _trunk(p["trunk"], jnp.asarray(x, jnp.float32)) @ p["acc"][0] + p["acc"][1]
        return np.asarray(out[:, 0], np.float64)


def sample_unlabelled(spaces: Sequence[tuple[str, str]], n: int, seed: int) -> list:
    """``n`` random architectures of each ``(space, dataset)``, as graphs (their meta says
    which space built them, so proxy scores cache by architecture)."""
    from nas.search_spaces import get_space

    rng = np.random.default_rng(seed)
    out = []
    for name, dataset in spaces:
        space = get_space(name)
        out += [space.to_graph(space.sample(rng), dataset) for _ in range(n)]
    return out


POOL_SPACES = (("ofa", "imagenet"), ("spos", "imagenet"), ("darts", "cifar10"),
               ("nasnet", "cifar10"), ("nb101", "cifar10"), ("nb201", "cifar10"),
               ("nb301", "cifar10"), ("nbmacro", "cifar10"))  # fmt: skip
"""Spaces whose random architectures join the pretraining set."""
_NO_SYNFLOW = ("ofa", "spos")  # ImageNet-sized: synflow is not cheap there; left unknown


def pretrain_pool(
    graphs: Sequence, families: Sequence[str], n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets of pretraining for ``graphs`` (first, in order; their labels are
    not used) and ``n`` random architectures per space of :data:`POOL_SPACES` (drawn with
    ``seed``): inputs are GRAF statistics less :data:`STATS`, targets those statistics and
    log synflow (unknown on ImageNet-sized spaces), all ranked within each family."""
    from nas.predictors.graf import NAMES, rank_by_family

    g0, sf0 = _statistics(graphs, families)
    g1, sf1, fams1 = _sampled(n, seed)
    g, sf, fams = np.vstack([g0, g1]), np.vstack([sf0, sf1]), list(families) + fams1
    keep = [i for i, name in enumerate(NAMES) if name not in STATS]
    x = rank_by_family(g[:, keep], fams)
    stats = rank_by_family(np.hstack([g[:, [NAMES.index(s) for s in STATS]], sf]), fams)
    stats[~np.isfinite(sf[:, 0]), -1] = np.nan
    return x, stats


def _statistics(graphs: Sequence, families: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """GRAF statistics and log synflow (NaN where not cheap) of ``graphs``."""
    from nas.predictors.features import features
    from nas.predictors.graf import graf_features, proxy_scores

    sf = np.full((len(graphs), 1), np.nan)
    cheap = [i for i, f in enumerate(families) if f.split("~")[0] not in _NO_SYNFLOW]
    sf[cheap] = proxy_scores([graphs[i] for i in cheap], ["synflow"], progress=True)
    return graf_features(features(graphs)), sf


@functools.cache
def _sampled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`_statistics` of the random architectures, once per process."""
    fams = [f"{s}~sample" for s, _ in POOL_SPACES for _ in range(n)]
    return (*_statistics(sample_unlabelled(POOL_SPACES, n, seed), fams), fams)
