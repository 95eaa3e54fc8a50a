"""The GENNAPE-style predictor: contrastive pretraining, fuzzy c-means heads, ranking loss.

Training (:meth:`GennapePredictor.fit`):

1. every graph becomes its compact computation graph (:mod:`nas.predictors.features`);
2. the encoder is pretrained with InfoNCE on two augmented views of each network (node
   dropping, edge dropping, feature noise), on the labelled graphs plus any ``unlabeled``;
3. fuzzy c-means clusters the pretrained embeddings; its centres give the memberships with
   which the heads' outputs are averaged;
4. encoder and heads are trained on the labels with a pairwise logistic ranking loss (pairs
   within one family only) plus a regression term on per-family standardised accuracy, and a
   membership-weighted loss on each head so that heads specialise in their cluster. The
   encoder moves the embeddings as it trains, so the centres follow them (``center_rate``:
   after every step each centre moves that far towards the batch's fuzzy c-means centre)
   and a last fuzzy c-means pass, started from them, settles them on the trained
   embeddings: memberships at prediction time describe the space the heads were trained in
   (``center_rate=0`` keeps the pretraining centres, the first version's behaviour).

``fine_tune`` continues step 4 on a few labelled graphs of a new family (the centres keep
following); each family keeps its own label scale for turning standardised outputs back
into accuracies. The uncertainty is the membership-weighted spread of the heads.

Scale (options ``scale_free`` and ``cost``): benchmark families differ in absolute size by
orders of magnitude (NB201 cells have 0.1-1.5 M parameters, NB101 networks up to 40 M), so
absolute sizes fed to the MLPs put another family's networks outside the training range.
With ``scale_free`` the encoder and the head MLPs see channel counts relative to the
network's mean and resolutions relative to its input, and only size-free graph features;
absolute size enters through one linear term on log FLOPs and/or log parameters
(``cost``), shared by the heads: within a family it only adds a learned multiple of the
cost proxy, whatever the family's absolute scale.

Compute prior (option ``prior``, default ``flops_depth``): the heads' output is added to a
prior fitted before the graph network: the log of the network's live multiply-adds (those
that reach the output: the compact graph drops dead branches) plus a fitted weight times
the log of its spatial depth, times a slope fitted on the training labels;
``effective_flops`` also learns a weight per op kind, ``flops`` has no depth term
(:mod:`nas.predictors.gennape.prior`). The graph network learns what compute does not explain,
so a family it never saw starts from a compute ranking instead of from whatever two source
families taught it: trained on NB101 + NB301, the network alone ranks NAS-Bench-Macro
*inversely* (tau -0.3 to -0.6), while live MACs rank NB201 at 0.636 against 0.578 for the
FLOPs that count dead convs. ``residual`` scales the network's part at training and
inference. ``prior="none"`` and ``scale_free=False`` give the first version's model.

Transfer (option ``transfer``, default ``prior``): the predictor remembers the spaces it was
trained (or fine-tuned) on. A graph from any other space gets the prior alone (``prior``),
the prior plus the share of the network's part that leaving each training family out
supports (``lofo``), or all of it (``full``); :mod:`nas.predictors.transfer` says why the default
trusts the network only where it was trained. The uncertainty stays the heads' spread at the
full residual.

Inference sorts graphs by size and runs dense batches (:func:`~nas.predictors.gennape.model.
pack_dense`: batched adjacency products instead of scatters); training keeps flat batches,
whose cost follows the number of edges when sizes are mixed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from nas.predictors.base import Decomposition, Predictor, check_labels
from nas.predictors.features import GraphFeatures, GraphLike, features, global_matrix
from nas.predictors.gennape.fcm import fuzzy_cmeans, membership_entropy
from nas.predictors.gennape.model import (
    NET_GLOBALS,
    Gennape,
    augment,
    bucket,
    pack,
    pack_dense,
)
from nas.predictors.gennape.options import GennapeOptions
from nas.predictors.gennape.prior import EffectiveFlops
from nas.predictors.transfer import (
    decide_share,
    families,
    fit_prior,
    learned_shares,
    restore_transfer,
    standardise,
    transfer_state,
)

from nas.weights import _key

DENSE_MAX_NODES = 64
"""Largest (padded) graph that inference batches densely (see ``pack_dense``)."""


@functools.cache
def _adamw(lr: float, steps: int, warmup: int) -> optax.GradientTransformation:
    """AdamW on a cosine schedule (with ``warmup`` steps from 0 when positive). One object
    per setting: the transformation is static in the jitted steps, so a new one per fit
    recompiled every step function on every fit (seconds each)."""
    if warmup:
        sched = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, steps)
    else:
        sched = optax.cosine_decay_schedule(lr, steps)
    return optax.adamw(sched, weight_decay=1e-4)


def _infonce(model: Gennape, b: dict, key: jax.Array, temperature: float, aug) -> jax.Array:
    k1, k2 = jax.random.split(key)
    z1 = model.project(model.encoder(augment(b, k1, *aug)))
    z2 = model.project(model.encoder(augment(b, k2, *aug)))
    gm = b["graph_mask"]
    n = z1.shape[0]
    z = jnp.concatenate([z1, z2])
    m = jnp.concatenate([gm, gm])
    logits = z @ z.T / temperature
    valid = (m[:, None] * m[None, :]) * (1.0 - jnp.eye(2 * n))
    logits = jnp.where(valid > 0, logits, -1e9)
    pos = jnp.concatenate([jnp.arange(n) + n, jnp.arange(n)])
    logp = jax.nn.log_softmax(logits, -1)
    nll = -jnp.take_along_axis(logp, pos[:, None], 1)[:, 0]
    return (nll * m).sum() / jnp.maximum(m.sum(), 1.0)


@nnx.jit(static_argnames=("temperature", "aug"))
def _pretrain_step(model, opt, b, key, temperature, aug):
    loss, grads = nnx.value_and_grad(lambda m: _infonce(m, b, key, temperature, aug))(model)
    opt.update(model, grads)
    return loss


def _supervised(model: Gennape, b: dict, y, grp, w: dict[str, float]):
    z = model.encoder(b)
    ys = model.heads(z, b["globals"])
    u = model.memberships(z)
    mean = b["prior"] + w["residual"] * (u * ys).sum(-1)
    ys = b["prior"][:, None] + w["residual"] * ys
    gm = b["graph_mask"]
    cnt = jnp.maximum(gm.sum(), 1.0)
    mse = (gm * (mean - y) ** 2).sum() / cnt
    pair = (grp[:, None] == grp[None, :]) & (y[:, None] - y[None, :] > 1e-6)
    pair = pair * gm[:, None] * gm[None, :]
    rank = (pair * jax.nn.softplus(-w["rank_scale"] * (mean[:, None] - mean[None, :]))).sum()
    rank = rank / jnp.maximum(pair.sum(), 1.0)
    head = (gm[:, None] * u * (ys - y[:, None]) ** 2).sum() / cnt
    loss = w["rank_weight"] * rank + w["mse_weight"] * mse + w["head_weight"] * head
    return loss, (jax.lax.stop_gradient(z), u)


@nnx.jit(static_argnames=("weights",))
def _train_step(model, opt, b, y, grp, weights):
    w = dict(weights)
    grad_fn = nnx.value_and_grad(lambda m: _supervised(m, b, y, grp, w), has_aux=True)
    (loss, (z, u)), grads = grad_fn(model)
    opt.update(model, grads)
    if w["center_rate"] > 0:
        # The centres follow the embeddings as the encoder trains (a mini-batch fuzzy
        # c-means step), so memberships keep describing the space the heads see.
        um = u**model.fuzzifier * b["graph_mask"][:, None]
        den = um.sum(0)[:, None]
        c = model.centers[...]
        target = jnp.where(den > 1e-6, (um.T @ z) / jnp.maximum(den, 1e-6), c)
        model.centers[...] = c + w["center_rate"] * (target - c)
    return loss


@nnx.jit(static_argnames=("residual",))
def _forward(model: Gennape, b: dict, residual: float):
    """``(mean, std, embedding, network part)``. The mean is the prior plus the network's
    part times the graph's ``weight``; the std is the heads' spread at the full residual,
    so that shrinking the part for an unseen family never makes it look more certain."""
    z = model.encoder(b)
    heads = model.heads(z, b["globals"])
    u = model.memberships(z)
    net = (u * heads).sum(-1)
    mean = b["prior"] + b["weight"] * net
    std = residual * jnp.sqrt((u * (heads - net[:, None]) ** 2).sum(-1))
    return mean, std, z, net


@nnx.jit
def _embed(model: Gennape, b: dict):
    return model.encoder(b)


class GennapePredictor(Predictor):
    """GENNAPE-style predictor on the IR's computation graph (see the module docstring).

    Args:
        seed: initialisation and sampling seed.
        **options: fields of :class:`GennapeOptions` (sizes, steps, learning rates, loss
            weights, prior, transfer).
    """

    name: ClassVar[str] = "gennape"
    Options: ClassVar[type] = GennapeOptions
    basis: ClassVar[str] = "prior+learned"

    def __init__(self, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        # Every option is saved (``self.options``), so that a saved model keeps its meaning
        # when defaults change (they did: scale_free and prior).
        self.cfg = self.options
        if self.cfg["prior"] == "none":
            self.basis = "learned"
        self.prior: EffectiveFlops | None = None
        self.families: set[str] = set()
        self.transfer_weight = 1.0
        # Shapes only: ``fit`` initialises a new model and loading restores every array,
        # so random initialisation here (a compilation per shape, seconds) would be
        # thrown away.
        self.model = nnx.eval_shape(self._new_model)
        self.y_mean, self.y_scale = 0.0, 1.0
        self.label_stats: dict[str, tuple[float, float]] = {}
        self.timings: dict[str, float] = {}

    def _new_model(self) -> Gennape:
        c = self.cfg
        return Gennape(
            c["hidden"],
            c["layers"],
            c["embed"],
            c["heads"],
            c["head_hidden"],
            c["fuzzifier"],
            bool(c["scale_free"]),
            c["cost"],
            rngs=nnx.Rngs(params=self.seed),
        )

    # ------------------------------------------------------------------ data plumbing

    def _pads(self, feats: Sequence[GraphFeatures], bs: int) -> tuple[int, int, int]:
        sizes = sorted((f.num_nodes for f in feats), reverse=True)[:bs]
        esizes = sorted((len(f.senders) for f in feats), reverse=True)[:bs]
        return bucket(sum(sizes) + 1), bucket(sum(esizes) + 1), bs

    def _batches(self, n: int, bs: int, steps: int, rng: np.random.Generator):
        if n <= bs:
            for _ in range(steps):
                yield np.arange(n)
            return
        order = rng.permutation(n)
        pos = 0
        for _ in range(steps):
            if pos + bs > n:
                order, pos = rng.permutation(n), 0
            yield order[pos : pos + bs]
            pos += bs

    # ------------------------------------------------------------------ training

    def fit(
        self,
        graphs: Sequence[GraphLike],
        y: Sequence[float],
        groups: Sequence[str] | None = None,
        unlabeled: Sequence[GraphLike] = (),
    ) -> GennapePredictor:
        y, groups = check_labels(self.name, graphs, y, groups)
        if self.from_pretrained:  # a pretrained model adapts to new data, not forgets
            return self.fine_tune(graphs, y, groups)
        t0 = time.perf_counter()
        feats = features(graphs)
        extra = features(unlabeled) if len(unlabeled) else []
        self.timings["featurize_s"] = time.perf_counter() - t0
        self.model = self._new_model()
        t0 = time.perf_counter()
        self._pretrain(feats + extra)
        self.timings["pretrain_s"] = time.perf_counter() - t0
        self._set_centers(feats + extra)
        t0 = time.perf_counter()
        self.prior = fit_prior(self.cfg["prior"], feats, y, groups, self.seed)
        self.timings["prior_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self._train(feats, y, groups, self.cfg["steps"], self.cfg["lr"])
        if self.cfg["center_rate"] > 0:
            self._refine_centers(feats)
        self.timings["train_s"] = time.perf_counter() - t0
        self.y_mean, self.y_scale = float(y.mean()), float(y.std() or 1.0)
        fams = families(graphs)
        self.families = set(fams)
        self.label_stats = _label_stats(fams, groups, y)
        t0 = time.perf_counter()

        def parts(train: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Held-out family scored by a predictor with these options trained on the rest.
            sub = GennapePredictor(self.seed, **{**self.options, "transfer": "full"})
            sub.fit([graphs[i] for i in train], y[train], [groups[i] for i in train])
            return sub._parts(features([graphs[i] for i in held]))

        self.transfer_weight = decide_share(
            self.cfg["transfer"], self.prior is not None, fams, y, parts, self.seed
        )
        self.timings["transfer_s"] = time.perf_counter() - t0
        self._finish(feats)
        return self

    def fine_tune(
        self,
        graphs: Sequence[GraphLike],
        y: Sequence[float],
        groups: Sequence[str] | None = None,
    ) -> GennapePredictor:
        """Continue supervised training on a few labelled graphs of a new family."""
        if not self.fitted:
            return self.fit(graphs, y, groups)
        y, groups = check_labels(self.name, graphs, y, groups, minimum=1)
        feats = features(graphs)
        self._train(feats, y, groups, self.cfg["finetune_steps"], self.cfg["finetune_lr"])
        fams = families(graphs)
        self.families |= set(fams)
        # The new family's label scale joins the earlier ones (which stay: they
        # de-standardise predictions for the families they came from).
        self.label_stats.update(_label_stats(fams, groups, y))
        self._finish(feats, extend=True)
        return self

    def _pretrain(self, feats: list[GraphFeatures]) -> None:
        steps = self.cfg["pretrain_steps"]
        if steps <= 0 or len(feats) < 2:
            return
        bs = min(self.cfg["batch"], len(feats))
        pads = self._pads(feats, bs)
        opt = nnx.Optimizer(self.model, _adamw(float(self.cfg["lr"]), steps, 0), wrt=nnx.Param)
        rng = np.random.default_rng(self.seed)
        key = jax.random.key(self.seed)
        for idx in self._batches(len(feats), bs, steps, rng):
            key, sub = jax.random.split(key)
            b = pack([feats[i] for i in idx], *pads)
            aug = (float(self.cfg["aug_drop"]), float(self.cfg["aug_noise"]))
            _pretrain_step(self.model, opt, b, sub, self.cfg["temperature"], aug)

    def _chunks(self, feats: Sequence[GraphFeatures]):
        """Inference batches ``(indices, batch)``.

        A graph's prediction must not depend on the graphs predicted with it (XLA rounds a
        reduction by its operands' shape, so a graph padded differently, or in a batch of
        another size, gets other last bits). Graphs of up to :data:`DENSE_MAX_NODES` nodes go
        in dense batches of exactly ``predict_batch`` graphs, each padded to its own node
        count rounded up to 16 (graphs of one padded size together); larger ones (NB301's
        200-node networks) one at a time in flat batches, whose sums run over the batch.
        """
        sizes = np.fromiter((f.num_nodes for f in feats), int, len(feats))
        padded = -(-np.maximum(sizes, 1) // 16) * 16
        rows = int(self.cfg["predict_batch"])
        for m in np.unique(padded):
            same = np.flatnonzero(padded == m)
            if m > DENSE_MAX_NODES:
                for j in same:
                    yield same[j == same], pack([feats[j]])
                continue
            for k in range(0, len(same), rows):
                idx = same[k : k + rows]
                chunk = [feats[j] for j in idx]
                yield idx, pack_dense(chunk, int(m), n_graphs=rows)

    def _embeddings(self, feats: Sequence[GraphFeatures]) -> np.ndarray:
        out = np.zeros((len(feats), self.cfg["embed"]), np.float32)
        for idx, b in self._chunks(feats):
            out[idx] = np.asarray(_embed(self.model, b))[: len(idx)]
        return out

    def _refine_centers(self, feats: Sequence[GraphFeatures]) -> None:
        """Fuzzy c-means on the trained embeddings, started from the current centres (so
        that each head keeps its cluster)."""
        z = self._embeddings(feats)
        c0 = np.asarray(self.model.centers[...], np.float64)
        centers, _ = fuzzy_cmeans(z, len(c0), self.cfg["fuzzifier"], iters=20, init=c0)
        self.model.centers[...] = jnp.asarray(centers, jnp.float32)

    def membership_entropy(self, graphs: Sequence[GraphLike]) -> float:
        """Mean normalised entropy of the heads' memberships over ``graphs`` (0: each graph
        belongs to one cluster; 1: uniform, the centres tell nothing apart)."""
        z = jnp.asarray(self._run(graphs)[2])
        return membership_entropy(np.asarray(self.model.memberships(z)))

    def _set_centers(self, feats: Sequence[GraphFeatures]) -> None:
        z = self._embeddings(feats)
        centers, _ = fuzzy_cmeans(z, self.cfg["heads"], self.cfg["fuzzifier"], seed=self.seed)
        if len(centers) < self.cfg["heads"]:  # fewer graphs than heads: repeat centres
            centers = np.resize(centers, (self.cfg["heads"], centers.shape[1]))
            centers += 1e-3 * np.arange(len(centers))[:, None]
        self.model.centers[...] = jnp.asarray(centers, jnp.float32)

    def _train(self, feats, y, groups, steps: int, lr: float) -> None:
        ys, grp = standardise(y, groups)
        bs = min(self.cfg["batch"], len(feats))
        pads = self._pads(feats, bs)
        warmup = max(steps // 10, 1)
        opt = nnx.Optimizer(self.model, _adamw(float(lr), max(steps, 2), warmup), wrt=nnx.Param)
        keys = ("rank_weight", "mse_weight", "head_weight", "rank_scale", "residual")
        weights = tuple((k, float(self.cfg[k])) for k in (*keys, "center_rate"))
        rng = np.random.default_rng(self.seed + 1)
        prior = self._prior(feats)
        for idx in self._batches(len(feats), bs, steps, rng):
            b = _with_graph_values(pack([feats[i] for i in idx], *pads), prior=prior[idx])
            yb = np.zeros(pads[2], np.float32)
            gb = np.full(pads[2], -1, np.int32)
            yb[: len(idx)] = ys[idx]
            gb[: len(idx)] = grp[idx]
            _train_step(self.model, opt, b, yb, gb, weights)

    def _prior(self, feats: Sequence[GraphFeatures]) -> np.ndarray:
        """The compute prior per graph, in standardised units (zeros without one)."""
        if self.prior is None:
            return np.zeros(len(feats), np.float32)
        return self.prior(feats)

    def _finish(self, feats: Sequence[GraphFeatures], extend: bool = False) -> None:
        z = np.concatenate([self._embeddings(feats), _net_globals(feats)], 1)
        if extend and self.ood_detector.ref is not None:
            old = self.ood_detector.ref * self.ood_detector.sd + self.ood_detector.mu
            z = np.concatenate([old, z])
        self.ood_detector.fit(z, seed=self.seed)
        self.fitted = True

    # ------------------------------------------------------------------ inference

    def _run(
        self, graphs: Sequence[GraphLike], feats: Sequence[GraphFeatures] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, embedding, network part)`` per graph, in standardised units."""
        self._require_fitted()
        feats = features(graphs) if feats is None else feats
        n = len(feats)
        mean, std, net = (np.zeros(n, np.float32) for _ in range(3))
        z = np.zeros((n, self.cfg["embed"]), np.float32)
        prior = self._prior(feats)
        residual = float(self.cfg["residual"])
        weight = residual * learned_shares(graphs, self.families, self.transfer_weight)
        for idx, b in self._chunks(feats):
            b = _with_graph_values(b, prior=prior[idx], weight=weight[idx])
            out = _forward(self.model, b, residual)
            k = len(idx)
            mean[idx], std[idx], z[idx], net[idx] = (np.asarray(a)[:k] for a in out)
        return mean, std, z, net

    def _parts(self, feats: Sequence[GraphFeatures]) -> tuple[np.ndarray, np.ndarray]:
        """The prior and the network's (unweighted) part per graph."""
        _, _, _, net = self._run([None] * len(feats), feats)
        return self._prior(feats), net

    def predict(self, graphs: Sequence[GraphLike]) -> tuple[np.ndarray, np.ndarray]:
        m, s, _, _ = self._run(graphs)
        # Per family, its own label scale (training standardised labels per family); an
        # unseen family gets the pooled scale of the first fit.
        mean = np.full(len(m), self.y_mean)
        scale = np.full(len(m), self.y_scale)
        for i, fam in enumerate(families(graphs)):
            if fam in self.label_stats:
                mean[i], scale[i] = self.label_stats[fam]
        return m * scale + mean, s * scale

    def decompose(self, graphs: Sequence[GraphLike]) -> Decomposition | None:
        """The compute prior and the network's part (times ``residual``) per graph; ``None``
        with ``prior="none"``."""
        if self.prior is None:
            return None
        feats = features(graphs)
        net = self._run(graphs, feats)[3] * float(self.cfg["residual"])
        share = learned_shares(graphs, self.families, self.transfer_weight)
        return Decomposition(self._prior(feats), net.astype(np.float64), share)

    def _ood_features(self, graphs: Sequence[GraphLike]) -> np.ndarray:
        return np.concatenate([self._run(graphs)[2], _net_globals(features(graphs))], 1)

    # ------------------------------------------------------------------ persistence

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state = nnx.state(self.model)
        leaves = jax.tree_util.tree_flatten_with_path(state)[0]
        arrays = {"model." + _key(p): np.asarray(v) for p, v in leaves}
        meta, extra = transfer_state(self.prior, self.families, self.transfer_weight)
        meta.update(y_mean=self.y_mean, y_scale=self.y_scale, label_stats=self.label_stats)
        return meta, {**arrays, **extra}

    def _restore(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        from nas.errors import DataError

        self.y_mean, self.y_scale = float(meta["y_mean"]), float(meta["y_scale"])
        self.label_stats = {
            str(k): (float(v[0]), float(v[1])) for k, v in meta.get("label_stats", {}).items()
        }
        self.prior, self.families, self.transfer_weight = restore_transfer(meta, arrays)
        state = nnx.state(self.model)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        new = []
        for p, leaf in leaves:
            k = "model." + _key(p)
            if k not in arrays or arrays[k].shape != leaf.shape:
                raise DataError(f"saved gennape predictor lacks tensor {k!r} of shape {leaf.shape}")
            new.append(jnp.asarray(arrays[k]))
        nnx.update(self.model, jax.tree_util.tree_unflatten(treedef, new))


def _label_stats(
    fams: Sequence[str], groups: Sequence[str], y: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Per family, the mean and standard deviation of the labels of its training group
    (training standardises labels within groups); a family spread over several groups
    gets none (the pooled scale applies)."""
    out = {}
    names, grp = np.array(list(fams)), np.array(list(groups))
    for fam in sorted(set(fams)):
        own = set(grp[names == fam])
        if len(own) != 1:
            continue
        v = y[grp == own.pop()]
        sd = float(v.std()) if len(v) > 1 else 1.0
        out[fam] = (float(v.mean()), sd if sd > 1e-8 else 1.0)
    return out


def _net_globals(feats: Sequence[GraphFeatures]) -> np.ndarray:
    """The graph-level features the network sees (the out-of-distribution detector's too)."""
    return global_matrix(feats)[:, NET_GLOBALS]


def _with_graph_values(b: dict, **values: np.ndarray) -> dict:
    """The batch with per-graph values (the prior, the network part's weight), padded like
    its graphs."""
    out = dict(b)
    for name, v in values.items():
        padded = np.zeros(b["graph_mask"].shape[0], np.float32)
        padded[: len(v)] = v
        out[name] = padded
    return out
