"""Path-indexed weight-sharing supernets (Single Path One-Shot style) in flax.nnx.

A *path supernet* holds every candidate op of every choice layer; the architecture is an
``int32`` array with one candidate index per layer, passed as an ordinary traced argument.
Each choice layer picks its candidate with :func:`jax.lax.switch`, so one compiled training
step serves every path and only the chosen candidate runs. Layers of identical shape inside
a stage are stacked and run with :func:`jax.lax.scan`, which keeps the compiled graph (and
the compile time) small.

This module holds what the SPOS and NAS-Bench-Macro supernets share:

- primitives: :class:`BN` (BatchNorm with a traced momentum, so recalibration with a
  cumulative average compiles once), :class:`ConvBN`, :class:`Dense`, :class:`Choice`
  (the switch), :func:`stack_modules` / :func:`scan_layers` (the scan);
- training: :class:`SupernetConfig`, :class:`SupernetTrainer` (uniform single-path sampling
  per step; SGD with momentum that, like PyTorch's SGD with ``grad=None``, leaves the
  weights and momentum of candidates that were not on the path untouched);
- evaluation: :func:`calibrate_bn` (reset BN statistics, then forward a few training batches
  in training mode, averaging their statistics) and :class:`PathEvaluator` (recalibrate,
  then accuracy with inherited weights; one compile for every path);
- weight transfer: :func:`extract_model` copies a path's weights into the standalone
  model built from the IR (:func:`nas.model.build_model`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from nas.errors import ConfigError
from nas.training import TrainingOptions, schedule
from nas.training import optimizer as make_optimizer

# --------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mode:
    """How a forward pass treats BatchNorm.

    Attributes:
        train: normalise with batch statistics and update the running ones (else use them).
        momentum: weight of the batch in the running-statistics update (PyTorch's
            convention: ``running = (1 - m) * running + m * batch``); may be traced.
    """

    train: bool
    momentum: Any = 0.1


def default_dw_impl() -> str:
    """``native`` (the C++ kernel, :func:`nas.kernels.depthwise`) on the CPU where the native
    kernels build, else the shifted depthwise conv (:func:`shifted_depthwise`); XLA's grouped
    conv (``xla``) on a GPU or TPU (:func:`nas.kernels.depthwise_impl`).

    The native kernel runs the depthwise conv, its input gradient and its weight gradient
    in one pass each (at 32x32x32x144, k=7, forward + backward: 10.3 ms against 94.5 ms
    shifted and 711 ms for XLA's grouped conv; ``benchmarks/native_kernels.py``). The
    shifted form runs a 7x7 depthwise conv's forward + backward 7x faster than XLA's
    grouped convolution (97 ms against 728 ms at 32x32x32x144), and unlike XLA's
    convolutions it keeps its speed inside ``lax.scan`` bodies (XLA:CPU runs convolutions in
    a loop body ~40x slower). Its custom VJP and optimisation barriers keep compiles short
    (the plain shifted form's autodiff compiled dramatically slower).
    """
    from nas import kernels

    return kernels.depthwise_impl(cpu_fallback="shift", accelerator="xla")


def _tap(xp: jax.Array, di: int, dj: int, ho: int, wo: int, stride: int) -> jax.Array:
    """``xp[:, di :: stride, dj :: stride]`` cut to ``ho x wo`` (NHWC)."""
    b, _, _, c = xp.shape
    return jax.lax.slice(
        xp,
        (0, di, dj, 0),
        (b, di + (ho - 1) * stride + 1, dj + (wo - 1) * stride + 1, c),
        (1, stride, stride, 1),
    )


def _taps(xp: jax.Array, w: jax.Array, stride: int, dilation: int, ho: int, wo: int):
    """``out[:, h, w] = sum_ij w[i, j] * xp[:, s*h + d*i, s*w + d*j]`` over a padded input."""
    out = None
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            term = _tap(xp, i * dilation, j * dilation, ho, wo, stride) * w[i, j]
            out = term if out is None else out + term
    return out


def _shift_taps(x: jax.Array, w: jax.Array, stride: int, dilation: int) -> jax.Array:
    """The depthwise conv as shifted multiply-adds (same padding)."""
    p = dilation * (w.shape[0] - 1) // 2
    _, h, wd, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    return _taps(xp, w, stride, dilation, (h - 1) // stride + 1, (wd - 1) // stride + 1)


def _shift_input_grad(g: jax.Array, w: jax.Array, shape, stride: int, dilation: int):
    """The transposed conv: ``g`` spread to stride 1 (zeros between), padded, correlated
    with the flipped kernel -- again one fusion of shifted multiply-adds (autodiff of the
    forward would materialise ``k*k`` padded copies of ``g`` and sum them)."""
    p = dilation * (w.shape[0] - 1) // 2
    _, h, wd, _ = shape
    _, ho, wo, _ = g.shape
    cfg = (
        (0, 0, 0),
        (p, h - 1 + p - stride * (ho - 1), stride - 1),
        (p, wd - 1 + p - stride * (wo - 1), stride - 1),
        (0, 0, 0),
    )
    u = jax.lax.pad(g, jnp.zeros((), g.dtype), cfg)
    return _taps(u, w[::-1, ::-1], 1, dilation, h, wd)


def _shift_weight_grad(x: jax.Array, g: jax.Array, k: int, stride: int, dilation: int):
    """``dw[i, j, c] = sum_{b,h,w} x_pad[b, s*h + d*i, s*w + d*j, c] * g[b, h, w, c]``.

    A few images at a time (``lax.map``, at most ~512 KB of activations per iteration): the
    ``k*k`` reductions over them stay in cache, 3.7x faster than over the whole batch and 4x
    faster than XLA's grouped-conv weight gradient, which XLA:CPU lowers to a dense ``C x C``
    convolution (measured at 32x32x32x144, k=7: 65 ms, 245 ms, 273 ms).
    """
    p = dilation * (k - 1) // 2
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    b, ho, wo, c = g.shape
    # Images per loop iteration: the most (a power of two dividing the batch) whose padded
    # activations fit in 512 KB, at least one.
    n = 1
    while b % (n * 2) == 0 and n * 2 * xp[0].size * xp.dtype.itemsize <= 512 * 1024:
        n *= 2
    xp = xp.reshape((b // n, n) + xp.shape[1:])
    g = g.reshape((b // n, n) + g.shape[1:])

    def one(args):
        xi, gi = args
        taps = [
            jnp.sum(_tap(xi, i * dilation, j * dilation, ho, wo, stride) * gi, axis=(0, 1, 2))
            for i in range(k)
            for j in range(k)
        ]
        return jnp.stack(taps).reshape(k, k, c)

    return jax.lax.map(one, (xp, g)).sum(axis=0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise(x: jax.Array, w: jax.Array, stride: int, dilation: int) -> jax.Array:
    return jax.lax.optimization_barrier(_shift_taps(x, w, stride, dilation))


def _depthwise_fwd(x, w, stride, dilation):
    return _depthwise(x, w, stride, dilation), (x, w)


def _depthwise_bwd(stride, dilation, res, g):
    x, w = res
    dx = _shift_input_grad(g, w, x.shape, stride, dilation)
    dw = _shift_weight_grad(x, g, w.shape[0], stride, dilation)
    return jax.lax.optimization_barrier(dx), dw


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def shifted_depthwise(x: jax.Array, w: jax.Array, stride: int, dilation: int = 1) -> jax.Array:
    """Depthwise ``k x k`` conv, padding ``dilation * (k - 1) // 2``, as ``k*k`` shifted
    multiply-adds, with a custom VJP.

    Forward and input gradient are shifted multiply-adds (20x and 6x faster than XLA:CPU's
    grouped convolution at 32x32x32x144, k=7); the weight gradient is per-image tap
    reductions (:func:`_shift_weight_grad`). Each result sits behind an optimisation
    barrier: otherwise XLA fuses the ``k*k`` taps into every consumer, recomputing them there
    and compiling slowly.

    Args:
        x: ``(B, H, W, C)``.
        w: ``(k, k, C)``.
        stride: the spatial stride.
        dilation: the kernel dilation.
    """
    return _depthwise(x, w, stride, dilation)


@jax.custom_vjp
def pointwise(x: jax.Array, w: jax.Array) -> jax.Array:
    """A 1x1 conv / linear layer: ``x (..., I) @ w (I, O)``.

    Its weight gradient is one matrix product ``x^T dy`` over the flattened leading axes.
    Differentiating the ``einsum`` instead, XLA:CPU first writes ``dy`` transposed, in a
    fusion with the ops that produce it. ``benchmarks/pointwise_grad.py``: a 32x32x32x48 ->
    144 layer's gradient took 25.8 ms that way and 9.7 ms this way; 32x64x64x16 -> 64,
    44.7 and 13.1 ms."""
    return jnp.einsum("...i,io->...o", x, w)


def _pointwise_fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return pointwise(x, w), (x, w)


def _pointwise_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    dw = x.reshape(-1, x.shape[-1]).T @ g.reshape(-1, g.shape[-1])
    return jnp.einsum("...o,io->...i", g, w), dw


pointwise.defvjp(_pointwise_fwd, _pointwise_bwd)


def im2col_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """A dense ``k x k`` conv (padding ``k // 2``, HWIO kernel) as one matrix product over the
    ``k*k`` shifted copies of ``x`` concatenated along channels: no XLA convolution, so it
    keeps its speed inside loop bodies (a stem conv inside a ``lax.scan`` over subnets)."""
    k = w.shape[0]
    p = k // 2
    _, h, wd, c = x.shape
    ho, wo = (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    cols = [_tap(xp, i, j, ho, wo, stride) for i in range(k) for j in range(k)]
    return pointwise(jnp.concatenate(cols, axis=-1), w.reshape(k * k * c, -1))


def conv2d(x: jax.Array, w: jax.Array, stride: int, groups: int, impl: str = "xla") -> jax.Array:
    """NHWC convolution with ``k // 2`` padding and an HWIO kernel, no bias.

    1x1 convs are matrix products (a strided 1x1 conv first subsamples); depthwise convs
    (``groups`` equal to the channels) are the native C++ kernel when ``impl`` is ``native``,
    ``k*k`` shifted multiply-adds when it is ``shift`` (faster to run on CPUs than XLA, far
    slower to compile), else XLA's grouped conv.
    """
    k = w.shape[0]
    if groups == 1 and k == 1:
        if stride > 1:
            x = x[:, ::stride, ::stride, :]
        return pointwise(x, w[0, 0])
    p = k // 2
    if groups > 1 and impl == "native":
        from nas import kernels

        return kernels.depthwise(x, w[:, :, 0], stride)
    if groups > 1 and impl == "shift":
        return shifted_depthwise(x, w[:, :, 0], stride)
    return jax.lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        ((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


class BN(nnx.Module):
    """BatchNorm over all but the last axis; biased batch variance, as flax stores it."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((channels,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((channels,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        if mode.train:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x - mean), axes)
            m = mode.momentum
            self.mean[...] = (1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)
            self.var[...] = (1 - m) * self.var[...] + m * jax.lax.stop_gradient(var)
        else:
            mean, var = self.mean[...], self.var[...]
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class ConvBN(nnx.Module):
    """Conv (no bias, ``k // 2`` padding) -> BN [-> ReLU]; ``depthwise`` keeps the width."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int,
        *,
        rngs: np.random.Generator,
        depthwise: bool = False,
        relu: bool = False,
        dw_impl: str = "xla",
    ) -> None:
        if depthwise and cin != cout:
            raise ConfigError(f"a depthwise conv keeps its width, got {cin} -> {cout}")
        self.groups = cin if depthwise else 1
        shape = (kernel, kernel, cin // self.groups, cout)
        fan_out = kernel * kernel * cout // self.groups
        std = math.sqrt(2.0 / fan_out)  # He (fan-out) initialisation, as torchvision does
        self.kernel = nnx.Param(jnp.asarray(rngs.normal(0.0, std, shape), jnp.float32))
        self.bn = BN(cout)
        self.stride = stride
        self.relu = relu
        self.dw_impl = dw_impl

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        y = conv2d(x, self.kernel[...], self.stride, self.groups, self.dw_impl)
        y = self.bn(y, mode)
        return jax.nn.relu(y) if self.relu else y


class Dense(nnx.Module):
    """A linear layer with a ``(in, out)`` kernel, as flax lays it out."""

    def __init__(self, cin: int, cout: int, *, rngs: np.random.Generator, bias: bool) -> None:
        bound = 1.0 / math.sqrt(cin)
        self.kernel = nnx.Param(jnp.asarray(rngs.uniform(-bound, bound, (cin, cout)), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.kernel[...]
        return y + self.bias[...] if self.bias is not None else y


class Choice(nnx.Module):
    """One choice layer: candidates with identical input and output shapes.

    ``__call__(x, index, mode)`` runs candidate ``index`` (a traced int) through
    :func:`jax.lax.switch`; only that candidate computes, and only its BatchNorm statistics
    change.
    """

    def __init__(self, candidates: Sequence[nnx.Module]) -> None:
        self.candidates = nnx.List(list(candidates))

    def __call__(self, x: jax.Array, index: jax.Array, mode: Mode) -> jax.Array:
        graphdef, params, rest = nnx.split(self.candidates, nnx.Param, ...)

        def branch(k: int) -> Callable:
            def run(params, rest, x):
                cands = nnx.merge(graphdef, params, rest)
                y = cands[k](x, mode)
                return y, nnx.state(cands, nnx.BatchStat)

            return run

        n = len(self.candidates)
        y, stats = jax.lax.switch(
            jnp.clip(index, 0, n - 1), [branch(k) for k in range(n)], params, rest, x
        )
        nnx.update(self.candidates, stats)
        return y


def stack_modules(modules: Sequence[nnx.Module]) -> nnx.Module:
    """One module of the same structure whose arrays stack ``modules``' along a new axis 0."""
    graphdef, _ = nnx.split(modules[0])
    states = [nnx.state(m) for m in modules]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    return nnx.merge(graphdef, stacked)


def scan_layers(stacked: nnx.Module, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
    """Run the stacked choice layers of :func:`stack_modules` in order, layer ``i`` on
    candidate ``path[i]``, as one :func:`jax.lax.scan` (one compiled layer body)."""
    graphdef, params, rest = nnx.split(stacked, nnx.Param, ...)

    def body(x, inputs):
        p, r, index = inputs
        layer = nnx.merge(graphdef, p, r)
        y = layer(x, index, mode)
        return y, nnx.state(layer, nnx.BatchStat)

    x, stats = jax.lax.scan(body, x, (params, rest, path))
    nnx.update(stacked, stats)
    return x


class PathSupernet(nnx.Module):
    """Base of the path-indexed supernets.

    Subclasses set ``choices`` (candidates per layer) and implement ``__call__(x, path,
    mode)``, :meth:`path_of` and :meth:`locate`.
    """

    choices: tuple[int, ...] = ()

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        raise NotImplementedError

    def path_of(self, genotype: Any) -> np.ndarray:
        """The int32 path (one candidate index per layer) of a genotype of the space."""
        raise NotImplementedError

    def locate(self, scope: str, path: Sequence[int]) -> tuple[nnx.Module, int | None]:
        """The module holding the weights of the IR block ``scope`` on ``path``, and the index
        into its stacked axis (``None`` when not stacked)."""
        raise NotImplementedError

    def sample_path(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random path."""
        return np.array([rng.integers(n) for n in self.choices], np.int32)


# --------------------------------------------------------------------------------------
# Weight transfer to the standalone IR model
# --------------------------------------------------------------------------------------


def _take(arr: jax.Array, index: int | None) -> np.ndarray:
    a = np.asarray(arr)
    return a if index is None else a[index]


def extract_model(supernet: PathSupernet, graph: Any, path: Sequence[int]):
    """The standalone :class:`~nas.model.GraphModel` of ``graph`` carrying the path's
    inherited weights (parameters and BatchNorm statistics).

    Every conv, batch_norm and dense node of the IR finds its weights through
    ``supernet.locate(node scope, path)``; a shape mismatch is a :class:`GraphError`. The
    model is built from those weights (no random initialisation, which would compile one
    initialiser per distinct weight shape).
    """
    from nas.model import GraphModel

    path = [int(p) for p in path]
    weights: dict[int, dict[str, np.ndarray]] = {}
    for n in graph.topological():
        op = graph.op(n)
        if op not in ("conv", "batch_norm", "dense"):
            continue
        scope = graph.g.nodes[n].get("scope", "")
        module, index = supernet.locate(scope, path)
        if op == "batch_norm":
            bn = module.bn
            pairs = [("scale", bn.scale), ("bias", bn.bias), ("mean", bn.mean), ("var", bn.var)]
        else:
            pairs = [("kernel", module.kernel)]
            if op == "dense" and getattr(module, "bias", None) is not None:
                pairs.append(("bias", module.bias))
        weights[n] = {name: _take(src[...], index) for name, src in pairs}
    model = GraphModel(graph, rngs=nnx.Rngs(params=0, dropout=1), weights=weights)
    model.eval()
    return model


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SupernetConfig(TrainingOptions):
    """Path-supernet training (SPOS's defaults) and path-evaluation settings.

    The training fields are :class:`nas.training.TrainingOptions`' (SPOS: SGD with momentum
    0.9, L2 4e-5 on kernels, learning rate decayed linearly to 0). With ``optimizer="sgd"``
    the update is :func:`sparse_sgd`, which leaves candidates off the sampled path alone.

    Attributes:
        bn_momentum: BatchNorm running-statistics momentum while training.
        seed: initialisation, data order and path sampling.
        calib_batches: training batches forwarded to recalibrate BN before evaluating a path.
        calib_batch_size: images per calibration batch.
        eval_batch_size: images per evaluation batch.
        eval_limit: evaluate on at most this many validation images (0: all).
    """

    steps: int = 400
    lr: float = 0.1
    optimizer: str = "sgd"
    weight_decay: float = 4e-5
    schedule: str = "linear"
    warmup: int = 0
    grad_clip: float = 0.0
    bn_momentum: float = 0.1
    seed: int = 0
    calib_batches: int = 4
    calib_batch_size: int = 128
    eval_batch_size: int = 256
    eval_limit: int = 0


class _SparseSGDState(NamedTuple):
    count: jax.Array
    trace: Any


def sparse_sgd(
    learning_rate: optax.ScalarOrSchedule, momentum: float, weight_decay: float
) -> optax.GradientTransformation:
    """SGD with momentum and L2 on kernels (``ndim > 1``) that skips tensors whose gradient
    is exactly zero: a candidate off the sampled path keeps its weights and its momentum, as
    PyTorch's SGD does for parameters with no gradient."""

    def init(params):
        return _SparseSGDState(
            jnp.zeros([], jnp.int32), jax.tree.map(lambda p: jnp.zeros_like(p), params)
        )

    def update(grads, state, params=None):
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def leaf(g, t, p):
            active = jnp.any(g != 0)
            if weight_decay and p.ndim > 1:
                g = g + weight_decay * p
            t_new = momentum * t + g
            return jnp.where(active, -lr * t_new, 0.0).astype(g.dtype), jnp.where(active, t_new, t)

        both = jax.tree.map(leaf, grads, state.trace, params)
        is_pair = lambda v: isinstance(v, tuple) and len(v) == 2  # noqa: E731
        updates = jax.tree.map(lambda v: v[0], both, is_leaf=is_pair)
        trace = jax.tree.map(lambda v: v[1], both, is_leaf=is_pair)
        return updates, _SparseSGDState(state.count + 1, trace)

    return optax.GradientTransformation(init, update)


class SupernetTrainer:
    """Trains a path supernet with one uniformly sampled path per step.

    ``traces`` counts how often the step was traced: one compile serves every path.
    """

    def __init__(self, model: PathSupernet, config: TrainingOptions) -> None:
        self.model = model
        self.config = config
        self.traces = 0
        if config.optimizer == "sgd":
            tx = sparse_sgd(schedule(config), config.momentum, config.weight_decay)
            if config.grad_clip > 0:
                tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
        else:
            tx = make_optimizer(config)
        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        trainer = self
        smoothing = config.label_smoothing
        bn_momentum = getattr(config, "bn_momentum", 0.1)

        @nnx.jit
        def step(model, optimizer, x, y, path):
            trainer.traces += 1  # runs only while tracing

            def loss_fn(model):
                logits = model(x, path, Mode(True, bn_momentum))
                labels = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), smoothing)
                return optax.softmax_cross_entropy(logits, labels).mean(), logits

            (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
            optimizer.update(model, grads)
            return loss, jnp.mean(jnp.argmax(logits, -1) == y)

        self._step = step

    def step(self, x: np.ndarray, y: np.ndarray, path: np.ndarray) -> tuple[float, float]:
        loss, acc = self._step(self.model, self.optimizer, x, y, jnp.asarray(path, jnp.int32))
        return loss, acc

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        log: Callable[[int, float, float], None] | None = None,
        seed: int | None = None,
    ) -> dict[str, float]:
        """``config.steps`` steps over ``(x, y)`` (:class:`nas.pipeline.Batches`), step ``s``
        on the uniformly random path of ``default_rng([seed, s, 2])``."""
        from nas.path_supernet import PathTraining
        from nas.pipeline import Batches
        from nas.training import run_training

        seed = getattr(self.config, "seed", 0) if seed is None else seed
        task = PathTraining(self.model, self.config, seed, trainer=self)
        batches = Batches(x, y, self.config.batch_size, seed)
        return run_training(task, batches, self.config.steps, progress=False, log=log)


# --------------------------------------------------------------------------------------
# Path evaluation
# --------------------------------------------------------------------------------------


def reset_bn(model: nnx.Module) -> None:
    """Set every BatchNorm's running mean to 0 and variance to 1."""
    for _, m in nnx.iter_modules(model):
        if isinstance(m, BN):
            m.mean[...] = jnp.zeros_like(m.mean[...])
            m.var[...] = jnp.ones_like(m.var[...])


class PathEvaluator:
    """Accuracy of a path with inherited weights, after BatchNorm recalibration.

    Recalibration resets the BN statistics and forwards ``calib`` batches (fixed training
    images, the same for every path) in training mode with momentum ``1 / (k + 1)`` for
    batch ``k``: the running statistics become the plain average over the batches. The
    calibration, reset and evaluation steps each compile once for every path (``traces``).
    """

    def __init__(
        self,
        model: PathSupernet,
        calib: Sequence[np.ndarray],
        x_val: np.ndarray,
        y_val: np.ndarray,
        eval_batch_size: int = 256,
    ) -> None:
        self.model = model
        self.calib = [jnp.asarray(b) for b in calib]
        self.traces = 0
        bs = min(eval_batch_size, len(x_val))
        pad = (-len(x_val)) % bs
        xv = np.concatenate([x_val, np.zeros((pad,) + x_val.shape[1:], x_val.dtype)])
        yv = np.concatenate([y_val, np.full(pad, -1, np.int32)])
        self.val = [
            (jnp.asarray(xv[i : i + bs]), jnp.asarray(yv[i : i + bs]))
            for i in range(0, len(xv), bs)
        ]
        self.n_val = len(x_val)
        ev = self

        @nnx.jit
        def calib_step(model, x, path, momentum):
            ev.traces += 1
            model(x, path, Mode(True, momentum))

        @nnx.jit
        def eval_step(model, x, y, path):
            ev.traces += 1
            logits = model(x, path, Mode(False))
            return jnp.sum(jnp.argmax(logits, -1) == y)

        @nnx.jit
        def reset(model):
            ev.traces += 1
            reset_bn(model)

        self._calib, self._eval, self._reset = calib_step, eval_step, reset

    def recalibrate(self, path: np.ndarray) -> None:
        """Reset BN statistics, then average them over the calibration batches on ``path``
        (:func:`nas.supernet.cumulative_bn`)."""
        from nas.supernet import cumulative_bn

        p = jnp.asarray(path, jnp.int32)
        cumulative_bn(
            lambda: self._reset(self.model),
            lambda x, m: self._calib(self.model, x, p, m),
            self.calib,
        )

    def accuracy(self, path: np.ndarray) -> float:
        """Validation accuracy (%) of ``path`` with the current BN statistics."""
        p = jnp.asarray(path, jnp.int32)
        correct = sum(self._eval(self.model, x, y, p) for x, y in self.val)
        return 100.0 * float(correct) / self.n_val

    def __call__(self, path: np.ndarray) -> float:
        """Recalibrate BN on ``path``, then its validation accuracy (%)."""
        self.recalibrate(path)
        return self.accuracy(path)


def calibration_batches(
    x: np.ndarray, batches: int, batch_size: int, seed: int = 0
) -> list[np.ndarray]:
    """``batches`` fixed batches of training images for BN recalibration
    (:func:`nas.pipeline.fixed_batches` at the stored size)."""
    from nas.pipeline import fixed_batches

    return fixed_batches(x, batches, batch_size, seed)
