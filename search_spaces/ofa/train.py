"""Training elastic supernets: OFA's progressive shrinking and BigNAS's sandwich rule.

Both are one jitted step, :meth:`ElasticTrainer.step`, over a *batch of subnets* (an
encoded :data:`~nas.search_spaces.ofa.supernet.Arch` with a leading subnet axis): the losses of
the subnets are summed and one optimiser update follows, which is what OFA's gradient
accumulation over ``dynamic_batch_size`` subnets and BigNAS's sandwich step do. Subnets are
traced arrays, so the step compiles once per (resolution, number of subnets, distillation
on/off, which of the step's subnets are *fixed*) and serves every subnet. The largest subnet,
and any subnet registered with ``ElasticTrainer(fixed=...)`` (BigNAS registers the smallest),
is fixed: where it appears, it runs a program of its own with no conds
(:class:`~nas.search_spaces.ofa.supernet.FixedSubnet`). Up to ``unroll``
further subnets are traced one after the other (XLA:CPU runs straight-line code faster than a
loop body); more share one ``lax.scan``.

- Progressive shrinking (OFA, :class:`nas.search_spaces.ofa.elastic.ProgressiveShrinking`): the full network first; then
  elastic kernel; elastic depth ({3,4}, then {2,3,4}); elastic expand ({4,6}, then {3,4,6})
  after sorting the middle channels by importance. From the kernel phase on, every subnet
  also learns from the frozen full network (knowledge distillation, OFA's
  ``loss = CE + kd_ratio * soft-CE(teacher)``).
- Sandwich rule (BigNAS, ``search_spaces/bignas``): every step trains the largest child with
  the labels, and the smallest and random children on the largest child's soft predictions
  of the same step (in-place distillation; the teacher's logits are not differentiated).

BN recalibration (:func:`calibrate_bn`) resets nothing in the supernet: it computes a
subnet's exact mean and variance over a few batches (cumulative averages, OFA's
``set_running_statistics``) into a copy of the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from nas.search_spaces.ofa.supernet import ElasticMBNet, FixedSubnet, stack_archs

from nas import compat
from nas.training import TrainingOptions
from nas.training import optimizer as training_optimizer


@dataclass(frozen=True)
class ElasticTrainConfig(TrainingOptions):
    """Settings of elastic supernet training (:class:`nas.training.TrainingOptions` plus
    distillation and step layout).

    Attributes:
        kd_ratio: weight of the distillation loss (OFA: 1.0).
        seed: data order and subnet sampling.
        unroll: a step with at most this many subnets after the first traces each one
            (longer compile, faster steps: a sandwich step of OFA-MobileNetV3 at 128x128
            takes 4.7 s instead of 6.5 s, compiling in 111 s instead of 86 s); more run
            under one ``lax.scan``.
    """

    steps: int = 200
    lr: float = 3e-3
    nesterov: bool = True
    weight_decay: float = 3e-5
    warmup: int = 5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    seed: int = 0
    unroll: int = 3


def make_optimizer(config: TrainingOptions) -> optax.GradientTransformation:
    """The optimiser of ``config`` (:func:`nas.training.optimizer`)."""
    return training_optimizer(config)


def _soft_ce(logits: jax.Array, target_logits: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy(logits, jax.nn.softmax(target_logits)).mean()


def _hard_ce(logits: jax.Array, y: jax.Array, n: int, smoothing: float) -> jax.Array:
    labels = optax.smooth_labels(jax.nn.one_hot(y, n), smoothing)
    return optax.softmax_cross_entropy(logits, labels).mean()


def _summed_loss_grads(
    model, teacher, x, y, archs, kd_ratio, mode, fixed, *, n_cls, smooth, unroll
):
    """The summed loss of a step's subnets and its gradient, and the first subnet's logits.

    One gradient per subnet, summed: each subnet's backward pass follows its forward pass,
    so only one subnet's activations are alive at a time. Fixed subnets run their own
    programs; up to ``unroll`` others are traced one after the other, more share a
    ``lax.scan`` (:func:`_scan_subnets`).
    """
    t_logits = None
    if mode == "kd":
        t_logits = jax.lax.stop_gradient(teacher(x, teacher.max_arch_arrays(), full=True))

    def pick(i):
        return {k: v[i] for k, v in archs.items()}

    def first_loss(model):
        logits0 = model(x, pick(0), fixed=fixed[0])
        loss = _hard_ce(logits0, y, n_cls, smooth)
        if mode == "kd":
            loss = loss + kd_ratio * _soft_ce(logits0, t_logits)
        return loss, logits0

    (loss, logits), grads = nnx.value_and_grad(first_loss, has_aux=True)(model)
    target = jax.lax.stop_gradient(logits) if mode == "sandwich" else t_logits

    def subnet_loss(m, arch, fixed=None):
        out = m(x, arch, fixed=fixed)
        if mode == "sandwich":
            return _soft_ce(out, target)
        sub = _hard_ce(out, y, n_cls, smooth)
        if mode == "kd":
            sub = sub + kd_ratio * _soft_ce(out, target)
        return sub

    acc, traced = (loss, grads), []
    for i in range(1, len(fixed)):
        if fixed[i] is None:
            traced.append(i)
        else:
            acc = _add(acc, nnx.value_and_grad(subnet_loss)(model, pick(i), fixed[i]))
    if len(traced) <= unroll:
        for i in traced:
            acc = _add(acc, nnx.value_and_grad(subnet_loss)(model, pick(i)))
    else:
        rest = {k: v[np.asarray(traced)] for k, v in archs.items()}
        acc = _scan_subnets(model, subnet_loss, rest, acc)
    return acc[0], logits, acc[1]


def _add(acc, loss_grads):
    return acc[0] + loss_grads[0], jax.tree.map(jnp.add, acc[1], loss_grads[1])


def _scan_subnets(model, subnet_loss, rest, acc):
    """``acc`` plus the losses and gradients of the subnets ``rest`` under one ``lax.scan``
    (one compiled body whatever their number); BN statistics and the summed gradient travel
    in the carry."""
    gdef, params, other = nnx.split(model, nnx.Param, ...)

    def body(carry, arch):
        # the weights ride in the carry (unchanged) so that the module merged here lives at
        # this trace level, as nnx's transforms require
        params, other, acc = carry
        m = nnx.merge(gdef, params, other)
        acc = _add(acc, nnx.value_and_grad(subnet_loss)(m, arch))
        return (params, nnx.state(m, nnx.Not(nnx.Param)), acc), None

    (_, other, acc), _ = jax.lax.scan(body, (params, other, acc), rest)
    nnx.update(model, other)
    return acc


class ElasticTrainer:
    """The jitted training step of an elastic supernet.

    Args:
        model: the supernet (trained in place).
        config: the settings.
        fixed: subnets (encoded archs) that come back step after step, such as a sandwich
            step's smallest: each gets a program of its own with no conds wherever it appears
            in a step (:class:`~nas.search_spaces.ofa.supernet.FixedSubnet`). The largest subnet
            always does.
        tx: the optimiser (default: ``config``'s). One made by
            :func:`nas.training.optimizer_given_lr` takes each step's learning rate from
            :meth:`step`'s ``lr`` (a changing schedule then keeps one compiled step).

    The step runs in training mode whatever the model's mode, and updates the model's arrays
    in place (their buffers are donated): an array read from the model before a step is
    invalid after it, so keep copies (``np.asarray``) of anything to compare. A teacher that
    shares arrays with the model (a fresh ``nnx.clone``) is given copies of its own.

    Attributes:
        traces: how many times a step was traced (compiled).
    """

    def __init__(
        self,
        model: ElasticMBNet,
        config: ElasticTrainConfig,
        fixed: Sequence[dict[str, np.ndarray]] = (),
        tx: optax.GradientTransformation | None = None,
    ) -> None:
        self.model = model
        self.config = config
        tx = make_optimizer(config) if tx is None else tx
        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        self.traces = 0
        self.fixed = [model.max_arch_arrays(), *fixed]
        losses = partial(
            _summed_loss_grads,
            n_cls=model.layout.n_classes,
            smooth=config.label_smoothing,
            unroll=config.unroll,
        )
        trainer = self

        def step(model, optimizer, teacher, x, y, archs, kd_ratio, lr, mode, fixed):
            trainer.traces += 1  # runs only while tracing
            loss, logits, grads = losses(model, teacher, x, y, archs, kd_ratio, mode, fixed)
            if lr is None:
                optimizer.update(model, grads)
            else:
                optimizer.update(model, grads, learning_rate=lr)
            return loss, jnp.mean(jnp.argmax(logits, -1) == y)

        # The step is a pure function of the flat state (donated: updated in place), and the
        # state's Variables are read and written directly: ``nnx.jit``'s graph traversal of
        # ~800 Variables on every call cost 30-45 ms of Python before each step could start.
        # The graph structure (in training mode) is fixed here, once.
        model.train()
        graphdef, state = nnx.split((model, self.optimizer))
        treedef = jax.tree.structure(state)
        where = dict(compat.iter_graph((model, self.optimizer)))
        self._vars = [where[path] for path, _ in nnx.to_flat_state(state)]

        @partial(jax.jit, static_argnames=("t_def", "mode", "fixed"), donate_argnums=0)
        def pure_step(leaves, t_state, x, y, archs, kd_ratio, lr, t_def, mode, fixed):
            model, optimizer = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
            teacher = None if t_def is None else nnx.merge(t_def, t_state)
            out = step(model, optimizer, teacher, x, y, archs, kd_ratio, lr, mode, fixed)
            return jax.tree.leaves(nnx.state((model, optimizer))), out

        self._step = pure_step

    def reset_optimizer(self) -> None:
        """Start the optimiser afresh (momentum and moments zero, as a new ``optax`` state),
        keeping the compiled step: OFA starts every phase with a new optimiser."""
        from flax.nnx.training.optimizer import to_opt_state

        fresh = to_opt_state(self.optimizer.tx.init(nnx.state(self.model, nnx.Param)))
        is_var = lambda v: isinstance(v, nnx.Variable)  # noqa: E731
        olds = jax.tree.leaves(self.optimizer.opt_state, is_leaf=is_var)
        for old, new in zip(olds, jax.tree.leaves(fresh, is_leaf=is_var), strict=True):
            old.set_value(new.get_value())

    def _fixed_of(self, arch: dict[str, np.ndarray]) -> FixedSubnet | None:
        for f in self.fixed:
            if all(np.array_equal(arch[k], v) for k, v in f.items() if k != "drop"):
                return FixedSubnet.of(arch)
        return None

    def step(
        self,
        x: np.ndarray,
        y: np.ndarray,
        archs: Sequence[dict[str, np.ndarray]],
        mode: str = "plain",
        teacher: ElasticMBNet | None = None,
        lr: Any = None,
    ) -> tuple[float, float]:
        """One update on the summed loss of ``archs``.

        Args:
            mode: ``plain`` (labels), ``kd`` (labels + distillation from ``teacher``'s full
                network) or ``sandwich`` (first subnet on labels, the rest on its logits).
            lr: this step's learning rate, for an optimiser that takes it per update
                (:func:`nas.training.optimizer_given_lr`); ``None`` for one with its schedule
                inside.
        """
        leaves = [v.get_value() for v in self._vars]
        t_def, t_state = (None, None) if teacher is None else nnx.split(teacher)
        if t_state is not None:
            mine = {id(v) for v in leaves}
            if any(id(v) in mine for v in jax.tree.leaves(t_state)):
                # a fresh clone shares the student's arrays, which the step donates: the
                # teacher gets copies of its own
                t_state = jax.tree.map(lambda v: jnp.copy(v) if id(v) in mine else v, t_state)
                nnx.update(teacher, t_state)
        leaves, (loss, acc) = self._step(
            leaves,
            t_state,
            jnp.asarray(x),
            jnp.asarray(y),
            stack_archs(archs),
            jnp.float32(self.config.kd_ratio),
            None if lr is None else jnp.float32(lr),
            t_def,
            mode,
            tuple(self._fixed_of(a) for a in archs),
        )
        for v, value in zip(self._vars, leaves, strict=True):
            v.set_value(value)
        return float(loss), float(acc)


# --------------------------------------------------------------------------------------
# BN recalibration and subnet evaluation
# --------------------------------------------------------------------------------------


@nnx.jit
def _calib_step(model, x, arch, momentum):
    for _, m in compat.iter_modules(model):
        if hasattr(m, "momentum") and isinstance(m.momentum, nnx.Variable):
            m.momentum[...] = momentum
    model(x, arch)


@nnx.jit
def _predict(model, x, arch):
    return model(x, arch)


def calibrate_bn(model: ElasticMBNet, arch: dict[str, np.ndarray], batches: Sequence[np.ndarray]):
    """Set the BN statistics of ``arch``'s layers to their exact averages over ``batches``
    (OFA's ``set_running_statistics``); returns the previous statistics for
    :func:`restore_bn`."""
    # copies: nnx.state's leaves are the live variables, which calibration overwrites
    saved = jax.tree_util.tree_map(jnp.array, nnx.state(model, nnx.BatchStat))
    mom = jax.tree_util.tree_map(jnp.array, nnx.state(model, _momentum_filter))
    model.train()
    for i, xb in enumerate(batches):
        _calib_step(model, jnp.asarray(xb), arch, jnp.float32(1.0 / (i + 1)))
    nnx.update(model, mom)
    return saved


def _momentum_filter(path: Any, value: Any) -> bool:
    from nas.search_spaces.ofa.supernet import BNMomentum

    return isinstance(value, BNMomentum)


def restore_bn(model: ElasticMBNet, saved: Any) -> None:
    nnx.update(model, saved)


def subnet_accuracy(
    model: ElasticMBNet,
    arch: dict[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int = 256,
) -> float:
    """Top-1 accuracy (percent) of a subnet in evaluation mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = _predict(model, jnp.asarray(x[i : i + batch_size]), arch)
        correct += int(jnp.sum(jnp.argmax(logits, -1) == jnp.asarray(y[i : i + batch_size])))
    model.train()
    return 100.0 * correct / len(x)


def evaluate_subnet(
    model: ElasticMBNet,
    arch: dict[str, np.ndarray],
    calib: Sequence[np.ndarray],
    x_val: np.ndarray,
    y_val: np.ndarray,
) -> float:
    """Accuracy of a subnet with inherited weights after BN recalibration (the supernet's
    own statistics are left as they were)."""
    saved = calibrate_bn(model, arch, calib)
    try:
        return subnet_accuracy(model, arch, x_val, y_val)
    finally:
        restore_bn(model, saved)
