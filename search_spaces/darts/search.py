"""DARTS differentiable architecture search: bilevel optimisation of the supernet.

Each search step is one compiled function (traced once for the whole search):

1. architecture step on a validation batch: the gradient of the validation loss with respect
   to the alphas, either first-order (weights held fixed) or second-order (DARTS' unrolled
   gradient: one virtual SGD step ``w' = w - xi * (momentum * m + grad_w L_train + wd * w)``
   with the weight optimiser's momentum ``m``, then
   ``grad_a L_val(w', a) - xi * (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps)``
   with ``w+- = w +- eps * grad_w' L_val(w', a)`` and ``eps = 0.01 / ||grad_w' L_val||``,
   the finite-difference Hessian-vector product of the DARTS paper; ``xi`` is the current
   weight learning rate), applied by Adam (lr 3e-4, betas (0.5, 0.999), L2 weight decay 1e-3);
2. weight step on a training batch with the updated alphas: SGD with momentum 0.9, weight
   decay 3e-4, gradient clipping at norm 5 and a cosine learning rate from 0.025 to 0.001.

The network weights are the model's ``nnx.Param`` variables and the architecture parameters
its :class:`~nas.search_spaces.darts.supernet.Alpha` variables, split with ``nnx.split``; each
group has its own optax optimiser. The data is the training split of the dataset cut in two
halves (search-train for the weights, search-validation for the alphas), as DARTS does with
CIFAR-10; the dataset's own validation split is never seen by the search.

The discrete genotype is derived as in DARTS: for each intermediate node the two incoming
edges whose strongest non-``none`` operation has the largest weight, each with that
operation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax
from nas.search_spaces.darts.genotypes import PRIMITIVES, STEPS, DartsGenotype
from nas.search_spaces.darts.supernet import EDGES, Alpha, DartsSupernet, count_weights

from nas.data import Dataset, load_dataset
from nas.errors import ConfigError
from nas.pipeline import Batches
from nas.training import progress_bar

NONE_INDEX = PRIMITIVES.index("none")

# Search-network (C, layers) per dataset when not given: DARTS' CIFAR setting; a 3-cell
# network for the 8x8 digits (resolutions 8, 4, 2), which keeps the compiled step small.
SEARCH_DEFAULTS: dict[str, tuple[int, int]] = {
    "digits": (8, 3),
    "cifar10": (16, 8),
    "cifar100": (16, 8),
}


@dataclass(frozen=True)
class DartsSearchConfig:
    """Settings of a DARTS search (defaults: the DARTS paper's CIFAR-10 search).

    Attributes:
        steps: search steps; each is one architecture update and one weight update.
        order: 1 (first-order) or 2 (second-order, unrolled) architecture gradient.
        C: supernet width (``None``: per dataset, see :data:`SEARCH_DEFAULTS`).
        layers: supernet cells (``None``: per dataset).
        batch_size: images per training batch and per validation batch.
        lr, lr_min, momentum, weight_decay, grad_clip: the weight optimiser.
        arch_lr, arch_betas, arch_weight_decay: the architecture optimiser (Adam).
        impl: depthwise-separable conv formulation (see ``supernet.py``; ``auto``: the
            native kernels where they build, else ``dense``).
        log_every: alpha history interval in steps (``0``: about 20 entries).
        seed: initialisation and data order.
        progress: show a progress bar (steps/s, training loss).
    """

    steps: int = 100
    order: int = 1
    C: int | None = None
    layers: int | None = None
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    impl: str = "auto"
    log_every: int = 0
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.order not in (1, 2):
            raise ConfigError(f"DARTS --order must be 1 or 2, got {self.order}")
        if self.steps < 1:
            raise ConfigError(f"DARTS needs at least 1 search step, got {self.steps}")
        if self.batch_size < 2:
            raise ConfigError(f"DARTS batch size must be at least 2, got {self.batch_size}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch_betas"] = list(self.arch_betas)
        return d


@dataclass
class DartsSearchResult:
    """What a DARTS search produced.

    Attributes:
        genotype: the derived discrete architecture.
        history: alpha history, one entry per logged step: ``step``, ``lr``, batch
            ``train_loss``/``train_accuracy``/``val_loss``/``val_accuracy`` and the softmax
            op weights ``normal``/``reduce`` (14 x 8, rows in DARTS edge order, columns in
            :data:`PRIMITIVES` order).
        metrics: ``supernet_val_accuracy`` (%) on the whole search-validation half,
            ``search_seconds``, ``compile_seconds``, ``seconds_per_step``.
        traces: how many times the search step was traced (1 for a correct search).
        config: the settings.
    """

    genotype: DartsGenotype
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    traces: int
    config: DartsSearchConfig
    supernet: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "genotype": self.genotype.to_str(),
            "metrics": self.metrics,
            "traces": self.traces,
            "config": self.config.to_json(),
            "supernet": self.supernet,
            "edges": [list(e) for e in EDGES],
            "primitives": list(PRIMITIVES),
            "history": self.history,
        }


# ------------------------------------------------------------------------------ derivation


def _global_norm(tree: Any) -> jax.Array:
    """The L2 norm of every leaf of ``tree`` together (the step size of the second-order
    DARTS finite difference is 0.01 over it)."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def derive_cell(weights: np.ndarray) -> tuple[tuple[str, int], ...]:
    """DARTS' ``_parse``: for node ``j = 2..5`` the two incoming edges with the largest
    non-``none`` op weight (strongest first), each with its strongest non-``none`` op.

    ``weights``: (14, 8) softmax weights, rows in DARTS edge order.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(EDGES), len(PRIMITIVES)):
        raise ValueError(f"expected ({len(EDGES)}, {len(PRIMITIVES)}) weights, got {w.shape}")
    masked = w.copy()
    masked[:, NONE_INDEX] = -np.inf
    pairs: list[tuple[str, int]] = []
    start = 0
    for j in range(2, STEPS + 2):
        rows = masked[start : start + j]
        strength = rows.max(axis=1)
        best = sorted(range(j), key=lambda s: (-strength[s], s))[:2]
        for s in best:
            pairs.append((PRIMITIVES[int(np.argmax(rows[s]))], s))
        start += j
    return tuple(pairs)


def derive_genotype(
    normal: np.ndarray, reduce: np.ndarray, cls: type[DartsGenotype] = DartsGenotype
) -> DartsGenotype:
    """The discrete genotype of the (14, 8) softmax weights of both cell types."""
    return cls(derive_cell(normal), derive_cell(reduce))


# ------------------------------------------------------------------------------ the step


def _weight_tx(
    cfg: DartsSearchConfig, total_steps: int
) -> tuple[optax.GradientTransformation, Any]:
    sched = optax.cosine_decay_schedule(cfg.lr, max(1, total_steps), alpha=cfg.lr_min / cfg.lr)
    # clip -> + wd * w -> momentum -> * -lr, i.e. torch SGD(momentum, weight_decay) after
    # clip_grad_norm_. The trace (momentum buffer) is state[2] (used by the unrolled step).
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.add_decayed_weights(cfg.weight_decay),
        optax.trace(decay=cfg.momentum),
        optax.scale_by_learning_rate(sched),
    ), sched


def _arch_tx(cfg: DartsSearchConfig) -> optax.GradientTransformation:
    b1, b2 = cfg.arch_betas
    return optax.chain(
        optax.add_decayed_weights(cfg.arch_weight_decay),  # torch Adam's L2 weight_decay
        optax.scale_by_adam(b1=b1, b2=b2, eps=1e-8),
        optax.scale_by_learning_rate(cfg.arch_lr),
    )


class BilevelSearch:
    """The compiled DARTS search step over a :class:`DartsSupernet`.

    ``state`` is a tuple ``(weights, alphas, weight_opt_state, arch_opt_state, step)`` of
    pytrees; :meth:`step` maps it to the next state plus batch metrics. ``traces`` counts how
    often the step was traced (compiled).
    """

    def __init__(self, model: DartsSupernet, cfg: DartsSearchConfig) -> None:
        self.cfg = cfg
        self.graphdef, weights, alphas, rest = nnx.split(model, nnx.Param, Alpha, ...)
        self.rest = rest
        self.w_tx, self.schedule = _weight_tx(cfg, cfg.steps)
        self.a_tx = _arch_tx(cfg)
        self.state = (weights, alphas, self.w_tx.init(weights), self.a_tx.init(alphas), 0)
        self.traces = 0
        self._begin = jax.jit(self._begin_impl)
        self._phase = jax.jit(self._phase_impl)
        self._eval = jax.jit(self._eval_impl)

    # -- pure functions ----------------------------------------------------------------

    def _loss(self, weights, alphas, x, y):
        model = nnx.merge(self.graphdef, weights, alphas, self.rest)
        logits = model(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, logits

    # One network pass (forward + gradients w.r.t. weights and alphas) is compiled once, as
    # :meth:`_phase_impl`, and called once per phase of a step with the phase index as a
    # traced argument, so first- and second-order search alike compile the network once.
    # The phases run from Python, not in a ``lax.scan``: XLA:CPU runs convolutions inside a
    # loop body ~40x slower (a 3x3 conv fwd+bwd at 64x32x32x16: 644 ms against 15 ms).
    # Phases (input weights, batch, what is kept):
    #   first order : val (w, val batch) -> arch update; weight (w, train) -> weight update
    #   second order: virtual (w, train) -> w' ; val (w', val) -> v = grad_w', grad_a, eps;
    #                 plus (w + eps v, train) ; minus (w - eps v, train) -> arch update;
    #                 weight (w, train) -> weight update
    PHASES = {1: ("val", "weight"), 2: ("virtual", "val", "plus", "minus", "weight")}

    def _begin_impl(self, state):
        weights, alphas, w_opt, a_opt, step = state
        zero = jnp.zeros((), jnp.float32)
        aux = {
            "wx": jax.tree.map(jnp.copy, weights),  # weights of the pass (w' in second order)
            "v": jax.tree.map(jnp.zeros_like, weights),
            "ga": jax.tree.map(jnp.zeros_like, alphas),
            "gp": jax.tree.map(jnp.zeros_like, alphas),
            "eps": zero,
            "lr": self.schedule(step),
            "metrics": {
                k: zero for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
            },
        }
        return weights, alphas, w_opt, a_opt, aux

    def _phase_impl(self, c, p, xt, yt, xv, yv):
        self.traces += 1  # runs only while tracing
        cfg = self.cfg
        phases = self.PHASES[cfg.order]
        lr = c[4]["lr"]
        inputs = {
            "virtual": lambda w, aux: w,
            "val": (lambda w, aux: aux["wx"]) if cfg.order == 2 else (lambda w, aux: w),
            "plus": lambda w, aux: jax.tree.map(lambda a, b: a + aux["eps"] * b, w, aux["v"]),
            "minus": lambda w, aux: jax.tree.map(lambda a, b: a - aux["eps"] * b, w, aux["v"]),
            "weight": lambda w, aux: w,
        }

        def arch_update(alphas, a_opt, ga):
            upd, a_opt = self.a_tx.update(ga, a_opt, alphas)
            return optax.apply_updates(alphas, upd), a_opt

        def upd_virtual(c, loss, acc, gw, ga):
            w, a, w_opt, a_opt, aux = c
            trace = w_opt[2].trace  # the SGD momentum buffer
            wv = jax.tree.map(
                lambda p, g, m: p - lr * (cfg.momentum * m + g + cfg.weight_decay * p),
                w,
                gw,
                trace,
            )
            return w, a, w_opt, a_opt, {**aux, "wx": wv}

        def upd_val(c, loss, acc, gw, ga):
            w, a, w_opt, a_opt, aux = c
            metrics = {**aux["metrics"], "val_loss": loss, "val_accuracy": acc}
            if cfg.order == 1:
                a, a_opt = arch_update(a, a_opt, ga)
                return w, a, w_opt, a_opt, {**aux, "metrics": metrics}
            eps = 0.01 / (_global_norm(gw) + 1e-12)
            return w, a, w_opt, a_opt, {**aux, "v": gw, "ga": ga, "eps": eps, "metrics": metrics}

        def upd_plus(c, loss, acc, gw, ga):
            w, a, w_opt, a_opt, aux = c
            return w, a, w_opt, a_opt, {**aux, "gp": ga}

        def upd_minus(c, loss, acc, gw, ga):
            w, a, w_opt, a_opt, aux = c
            eps = aux["eps"]
            g = jax.tree.map(
                lambda gv, gp, gm: gv - lr * (gp - gm) / (2 * eps), aux["ga"], aux["gp"], ga
            )
            a, a_opt = arch_update(a, a_opt, g)
            return w, a, w_opt, a_opt, aux

        def upd_weight(c, loss, acc, gw, ga):
            w, a, w_opt, a_opt, aux = c
            upd, w_opt = self.w_tx.update(gw, w_opt, w)
            w = optax.apply_updates(w, upd)
            metrics = {**aux["metrics"], "train_loss": loss, "train_accuracy": acc}
            return w, a, w_opt, a_opt, {**aux, "metrics": metrics}

        updates = {
            "virtual": upd_virtual,
            "val": upd_val,
            "plus": upd_plus,
            "minus": upd_minus,
            "weight": upd_weight,
        }
        uses_val = jnp.asarray([name == "val" for name in phases])
        w, a, _, _, aux = c
        w_in = lax.switch(p, [inputs[n] for n in phases], w, aux)
        x = jnp.where(uses_val[p], xv, xt)
        y = jnp.where(uses_val[p], yv, yt)
        (loss, logits), (gw, ga) = jax.value_and_grad(self._loss, argnums=(0, 1), has_aux=True)(
            w_in, a, x, y
        )
        acc = 100.0 * jnp.mean(jnp.argmax(logits, -1) == y)
        return lax.switch(p, [updates[n] for n in phases], c, loss, acc, gw, ga)

    def _eval_impl(self, weights, alphas, x, y):
        _, logits = self._loss(weights, alphas, x, y)
        return jnp.sum(jnp.argmax(logits, -1) == y)

    # -- driver ------------------------------------------------------------------------

    def step(self, xt, yt, xv, yv) -> dict[str, jax.Array]:
        """One search step (every phase of :data:`PHASES`); returns the batch metrics."""
        c = self._begin(self.state)
        for p in range(len(self.PHASES[self.cfg.order])):
            c = self._phase(c, np.int32(p), xt, yt, xv, yv)
        weights, alphas, w_opt, a_opt, aux = c
        self.state = (weights, alphas, w_opt, a_opt, self.state[4] + 1)
        return {"lr": aux["lr"], **aux["metrics"]}

    def op_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Softmax op weights (normal, reduce), each (14, 8)."""
        alphas = self.state[1]
        model = nnx.merge(self.graphdef, self.state[0], alphas, self.rest)
        n, r = model.weights()
        return np.asarray(n), np.asarray(r)

    def accuracy(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
        """Supernet accuracy (%) over full batches of ``(x, y)`` (batch-statistics BN)."""
        n = (len(x) // batch_size) * batch_size
        if n == 0:
            return float("nan")
        correct = 0
        for i in range(0, n, batch_size):
            correct += int(
                self._eval(
                    self.state[0], self.state[1], x[i : i + batch_size], y[i : i + batch_size]
                )
            )
        return 100.0 * correct / n

    def model(self) -> DartsSupernet:
        return nnx.merge(self.graphdef, self.state[0], self.state[1], self.rest)


# ------------------------------------------------------------------------------ entry point


def _history_entry(step: int, search: BilevelSearch, m: dict[str, Any]) -> dict[str, Any]:
    normal, reduce = search.op_weights()
    return {
        "step": step,
        **{k: float(v) for k, v in m.items()},
        "normal": np.round(normal, 6).tolist(),
        "reduce": np.round(reduce, 6).tolist(),
    }


def _halves(data: Dataset, cfg: DartsSearchConfig) -> tuple[tuple, tuple, int]:
    """The training split cut into search-train and search-validation halves (seeded), and
    the batch size both can give."""
    order = np.random.default_rng(cfg.seed).permutation(len(data.x_train))
    half = len(order) // 2
    tr, va = order[:half], order[half:]
    bs = min(cfg.batch_size, len(tr), len(va))
    if bs < 2:
        raise ConfigError(f"dataset {data.name!r} is too small for a DARTS search")
    return (data.x_train[tr], data.y_train[tr]), (data.x_train[va], data.y_train[va]), bs


def _run(
    search: BilevelSearch, train_batches: Batches, val_batches: Batches, cfg: DartsSearchConfig
) -> tuple[list[dict[str, Any]], float, float]:
    """``cfg.steps`` bilevel steps with a progress bar; returns the alpha history (every
    ``log_every`` steps), the search's seconds and the first step's (its compile)."""
    log_every = cfg.log_every or max(1, math.ceil(cfg.steps / 20))
    history = [_history_entry(0, search, {})]
    t0 = time.perf_counter()
    compile_s = 0.0
    with progress_bar("darts search", cfg.steps, 0, cfg.progress) as update:
        for step in range(1, cfg.steps + 1):
            m = search.step(*train_batches(step - 1), *val_batches(step - 1))
            if step == 1:
                jax.block_until_ready(m)
                compile_s = time.perf_counter() - t0
            if step % log_every == 0 or step == cfg.steps:
                history.append(_history_entry(step, search, m))
            if cfg.progress:
                update(step, float(m["train_loss"]))
    jax.block_until_ready(search.state)
    return history, time.perf_counter() - t0, compile_s


def darts_search(
    dataset: str | Dataset = "digits",
    config: DartsSearchConfig | None = None,
    out_dir: str | Path | None = None,
    data_dir: str | None = None,
    genotype_cls: type[DartsGenotype] = DartsGenotype,
) -> DartsSearchResult:
    """Run a DARTS search and derive its genotype.

    Args:
        dataset: ``digits``, ``cifar10`` (local folder) or a loaded :class:`~nas.data.Dataset`;
            its training split is cut into search-train and search-validation halves.
        config: the search settings (``steps``, ``order`` ...).
        out_dir: where ``alpha_history.json`` (the :meth:`DartsSearchResult.to_json` document)
            is written; nothing is written when ``None``.
        data_dir: the CIFAR-10 folder for ``cifar10``.

    Returns:
        the derived genotype, the alpha history and the supernet metrics.

    Example:
        >>> from nas.search_spaces.darts.search import DartsSearchConfig, darts_search
        >>> r = darts_search("digits", DartsSearchConfig(steps=2, C=4, layers=3))  # doctest: +SKIP
        >>> r.genotype.to_str()  # doctest: +SKIP
    """
    cfg = config or DartsSearchConfig()
    data = (
        dataset
        if isinstance(dataset, Dataset)
        else load_dataset(dataset, seed=cfg.seed, data_dir=data_dir)
    )
    c_default, l_default = SEARCH_DEFAULTS.get(data.name, (16, 8))
    C, layers = cfg.C or c_default, cfg.layers or l_default
    (xt_all, yt_all), (xv_all, yv_all), bs = _halves(data, cfg)

    model = DartsSupernet(
        C,
        layers,
        num_classes=data.num_classes,
        in_channels=data.input_shape[-1],
        impl=cfg.impl,
        seed=cfg.seed,
    )
    search = BilevelSearch(model, cfg)
    # the platform's one batch iterator (nas.pipeline): batch s of each half depends on
    # (seed, s) only
    train_batches = Batches(xt_all, yt_all, bs, cfg.seed + 1)
    val_batches = Batches(xv_all, yv_all, bs, cfg.seed + 2)
    history, search_s, compile_s = _run(search, train_batches, val_batches, cfg)
    normal, reduce = search.op_weights()
    genotype = derive_genotype(normal, reduce, genotype_cls)
    metrics = {
        "supernet_val_accuracy": search.accuracy(xv_all, yv_all, bs),
        "search_seconds": search_s,
        "compile_seconds": compile_s,
        "seconds_per_step": (search_s - compile_s) / max(1, cfg.steps - 1),
    }
    result = DartsSearchResult(
        genotype=genotype,
        history=history,
        metrics=metrics,
        traces=search.traces,
        config=cfg,
        supernet={"C": C, "layers": layers, "weights": count_weights(model), "dataset": data.name},
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "alpha_history.json").write_text(json.dumps(result.to_json(), indent=1))
    return result
