"""Elastic MobileNet supernets in flax.nnx (Once-for-All; the primitives BigNAS reuses).

One module holds the weights of the largest network; a subnet is chosen by an *architecture
array* (:class:`Arch`, a dict of small int32 arrays) that is an ordinary traced argument, so
one compiled training or evaluation step serves every subnet of a resolution:

- **elastic kernel**: every depthwise conv keeps a ``kmax x kmax`` kernel. A smaller kernel is
  the centre crop, passed (OFA) through the learned kernel transformation matrices
  ``7to5`` (25x25) and ``5to3`` (9x9), initialised to the identity
  (``DynamicSeparableConv2d``, ``KERNEL_TRANSFORM_MODE=1``). A ``lax.switch`` on the traced
  kernel size runs the depthwise conv of the chosen size only.
- **elastic depth**: block ``j`` of a stage runs when ``j < depth[stage]``; a skipped block is
  an identity through ``lax.cond`` (not computed), and its BatchNorm statistics are not
  updated.
- **elastic width / expand ratio**: channel counts are traced integers. A block's middle
  channels are computed in chunks, one per step between the expand ratios' widths
  (``StageLayout.expands``; OFA-MobileNetV3 at 24 input channels: 0-72, 72-96, 96-144), and a
  chunk beyond the subnet's middle width is skipped by ``lax.cond``, so a subnet pays for its
  own width. Within a chunk, and for output widths (BigNAS), a channel mask
  (``arange(cmax) < n``) zeroes the channels beyond the count: the first channels after OFA's
  channel-importance sorting (:meth:`ElasticMBNet.reorganize_channels`). Masked BatchNorm
  updates running statistics of the active channels only (``DynamicBatchNorm2d``).
- **elastic resolution**: the input size is a static shape, so each resolution compiles once
  (OFA trains with a few resolutions per run; a search evaluates at the subnet's one).
- **fixed subnets** (:class:`FixedSubnet`, static): a subnet that comes back every step (a
  sandwich step's largest and smallest) can run a program of its own, in which the blocks
  and chunks it does not use are left out and each depthwise conv has its one kernel: no
  ``cond``, no ``switch``. Measured on the smallest OFA-MobileNetV3 subnet's training step:
  0.27 s traced, 0.21 s fixed.

Weights are stored in flax layout (``(kh, kw, in, out)`` kernels, 1x1 convs as
``(in, out)`` matrices) so that :func:`extract_child` slices them straight into the IR-built
standalone model (:func:`nas.model.build_model`).

Depthwise convs are the native C++ kernel by default where it builds (``dw_impl="native"``,
:func:`nas.kernels.depthwise`, see :func:`nas.oneshot.default_dw_impl`), else ``k*k`` shifted
multiply-adds with a custom VJP (``dw_impl="shift"``, :func:`nas.oneshot.shifted_depthwise`);
``dw_impl="xla"`` is XLA's grouped convolution. Measured with ``benchmarks/ofa_supernet.py``
(batch 32 at 128x128, OFA-MobileNetV3, malloc tuned as :mod:`nas.memory` does): a
random-subnet training step takes 0.30 s with ``native``, median over 15 subnets the
benchmark shares with ``ofa`` after 20 warm-up steps (``ofa``: 0.48 s, also 0.48 s with the
same malloc tunables); 0.35 s before 1x1 convs took :func:`nas.oneshot.pointwise`. Measured on
each subnet's first encounter with no warm-up (a branch's first run pays YNN's set-up),
0.50 s against 0.72 s, before the chunks' rematerialisation; on older draws 0.40 s; 0.46 s
before the training step became a plain ``jax.jit`` over the flat state; 0.49 s before the
middle channels were chunked; 0.89 s before the malloc tuning; 2.1 s with ``shift`` before the
step's other speed-ups); ``xla`` took 9.8 s, its weight gradient lowered to a dense ``C x C``
convolution. The stem conv is an im2col matrix product (:func:`nas.oneshot.im2col_conv`)
so that a training step's ``lax.scan`` over many subnets holds no XLA convolution (XLA:CPU
runs those ~40x slower inside loop bodies). A switch over three copies of the block, with
weights sliced to each expand ratio's width, was slower than masking for every subnet (max
1.46 -> 2.11 s): JAX's cond partial evaluation zero-fills and copies the residuals of the
branches not taken, and three full copies have three sets. Chunks share nothing, so only a
skipped chunk's residuals are zero-filled, and a traced chunk keeps only its conv outputs
(``jax.checkpoint``) so that they are few. Making inactive blocks skip through their chunks'
conds instead of a cond around the block was slower again (max 0.98 -> 1.14 s, untuned
malloc): residuals
of nested conds are copied out level by level, but a block cond is one level more only for
blocks that may be skipped, and it saves the chunk conds of a skipped block altogether.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.ad_checkpoint import checkpoint_name
from nas.search_spaces.ofa.ops import CHANNEL_DIVISIBLE, SE_REDUCTION, make_divisible

from nas.errors import InvalidGenotype
from nas.oneshot import conv2d, default_dw_impl, im2col_conv, pointwise

Arch = dict[str, jax.Array]
"""A subnet as traced arrays: ``stem`` (), ``width`` (S,), ``depth`` (S,), ``ks`` (L,),
``mid`` (L,), ``se_mid`` (L,), ``head`` () -- channel counts and kernel sizes."""


# --------------------------------------------------------------------------------------
# Static layout of a supernet
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageLayout:
    """One stage of MBConv blocks at its largest.

    Attributes:
        max_width: output channels of the largest setting.
        stride: stride of the first block.
        act: IR activation name (``relu``, ``relu6``, ``hswish``, ``swish``).
        se: whether the blocks have squeeze-and-excitation.
        max_depth: blocks of the largest setting.
        kernels: kernel-size choices (ascending; the largest is stored).
        max_expand: largest expand ratio; 1 means no inverted-bottleneck 1x1 conv.
        first_residual: whether the first block has an identity shortcut (the later blocks
            always have one).
        expands: the expand-ratio choices. With more than one, the middle channels are
            computed in chunks, one per step between the choices' widths, and a chunk
            beyond the subnet's width is skipped (:class:`ElasticMBBlock`); without, the
            largest middle width is computed and masked.
    """

    max_width: int
    stride: int
    act: str
    se: bool
    max_depth: int
    kernels: tuple[int, ...]
    max_expand: float = 6
    first_residual: bool = False
    expands: tuple[float, ...] = ()


@dataclass(frozen=True)
class NetLayout:
    """A whole elastic MobileNet: stem conv, stages, head.

    Attributes:
        in_channels: input channels (3 for images, 1 for digits).
        stem_width: largest stem width.
        stem_act: stem activation.
        stages: the MBConv stages.
        head_width: the final 1x1 expand conv's largest width (with BN).
        head_act: its activation.
        feature_mix: width of OFA-MobileNetV3's 1x1 conv after the pool (no BN), or 0.
        n_classes: classifier outputs.
        dropout: classifier dropout rate.
        kernel_transform: OFA's kernel transformation matrices (else a plain centre crop).
        se_acts: SE's inner activation and gate.
        bn: BatchNorm (momentum, eps), PyTorch convention.
        head_before_pool: the expand conv runs before the pool (MobileNetV3, BigNAS).
    """

    in_channels: int
    stem_width: int
    stem_act: str
    stages: tuple[StageLayout, ...]
    head_width: int
    head_act: str
    feature_mix: int
    n_classes: int
    dropout: float = 0.1
    kernel_transform: bool = True
    se_acts: tuple[str, str] = ("relu", "hsigmoid")
    bn: tuple[float, float] = (0.1, 1e-5)
    head_before_pool: bool = True

    @property
    def n_layers(self) -> int:
        return sum(s.max_depth for s in self.stages)

    def stage_of_layer(self) -> list[tuple[int, int]]:
        """(stage, position in stage) of every layer."""
        return [(i, j) for i, s in enumerate(self.stages) for j in range(s.max_depth)]

    def max_mids(self) -> list[int]:
        """The stored middle width of every layer."""
        out = []
        prev = self.stem_width
        for s in self.stages:
            for j in range(s.max_depth):
                cin = prev if j == 0 else s.max_width
                out.append(cin if s.max_expand == 1 else _mid(cin, s.max_expand))
            prev = s.max_width
        return out


def _mid(cin: int, e: float) -> int:
    """OFA's middle width: ``make_divisible(round(in * e), 8)``."""
    return make_divisible(round(cin * e), CHANNEL_DIVISIBLE)


def _se_mid(mid: int) -> int:
    return make_divisible(mid // SE_REDUCTION, CHANNEL_DIVISIBLE)


@dataclass(frozen=True)
class SubnetChoice:
    """A subnet in plain Python numbers (what :func:`encode_arch` turns into arrays).

    Attributes:
        stem: stem width.
        widths: output width per stage.
        depths: blocks per stage.
        ks: kernel per layer (all ``n_layers``; inactive ones are ignored).
        expand: expand ratio per layer (1 for stages without inverted bottleneck).
        head: final expand conv width.
    """

    stem: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    ks: tuple[int, ...]
    expand: tuple[float, ...]
    head: int
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


def encode_arch(layout: NetLayout, choice: SubnetChoice) -> dict[str, np.ndarray]:
    """The traced-array form of a subnet (numpy; pass it to a jitted step)."""
    mids, se_mids = [], []
    prev = choice.stem
    li = 0
    for si, s in enumerate(layout.stages):
        w = choice.widths[si]
        for j in range(s.max_depth):
            cin = prev if j == 0 else w
            e = choice.expand[li]
            mid = cin if s.max_expand == 1 else _mid(cin, e)
            mids.append(mid)
            se_mids.append(_se_mid(mid) if s.se else 0)
            li += 1
        prev = w
    return {
        "stem": np.int32(choice.stem),
        "width": np.asarray(choice.widths, np.int32),
        "depth": np.asarray(choice.depths, np.int32),
        "ks": np.asarray(choice.ks, np.int32),
        "mid": np.asarray(mids, np.int32),
        "se_mid": np.asarray(se_mids, np.int32),
        "head": np.int32(choice.head),
    }


def stack_archs(archs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several encoded subnets as one batch of arrays (leading axis = subnet)."""
    return {k: np.stack([a[k] for a in archs]) for k in archs[0]}


@dataclass(frozen=True)
class FixedSubnet:
    """The compile-time part of a subnet: blocks per stage, kernel size and middle width per
    layer. Given one (a static argument), :class:`ElasticMBNet` runs that subnet with no
    ``cond`` or ``switch``: skipped blocks and middle-channel chunks are left out of the
    program, and each depthwise conv has its one kernel. Channel counts stay traced (masks),
    so the same program is exact for any ``Arch`` with these depths, kernels and middle
    widths. A training step compiles one per subnet it is given, so it is for subnets that
    come back every step (a sandwich step's largest and smallest)."""

    depths: tuple[int, ...]
    ks: tuple[int, ...]
    mids: tuple[int, ...]

    @classmethod
    def of(cls, arch: Mapping[str, Any]) -> FixedSubnet:
        def ints(k):
            return tuple(int(v) for v in np.asarray(arch[k]).ravel())

        return cls(ints("depth"), ints("ks"), ints("mid"))


# --------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------


def act_fn(name: str, x: jax.Array) -> jax.Array:
    if name == "relu":
        return jax.nn.relu(x)
    if name == "relu6":
        return jax.nn.relu6(x)
    if name == "hswish":
        return x * jax.nn.relu6(x + 3.0) / 6.0
    if name == "hsigmoid":
        return jax.nn.relu6(x + 3.0) / 6.0
    if name == "swish":
        return jax.nn.silu(x)
    if name == "sigmoid":
        return jax.nn.sigmoid(x)
    if name in ("", "none"):
        return x
    raise ValueError(f"unknown activation {name!r}")


def depthwise_conv(x: jax.Array, w: jax.Array, stride: int, impl: str = "shift") -> jax.Array:
    """Depthwise ``k x k`` conv with symmetric padding ``k // 2`` (OFA's same padding).

    Args:
        x: ``(B, H, W, C)``.
        w: ``(k, k, C)``.
        stride: 1 or 2.
        impl: ``native`` (C++ kernel), ``shift`` (k*k shifted multiply-adds) or ``xla``
            (grouped convolution).
    """
    return conv2d(x, w[:, :, None, :], stride, x.shape[-1], impl)


def _saved(x: jax.Array) -> jax.Array:
    """``x``, marked as an activation a rematerialised chunk keeps (:data:`_SAVE_CONVS`)."""
    return checkpoint_name(x, "conv")


_SAVE_CONVS = jax.checkpoint_policies.save_only_these_names("conv")


def _mask(n: jax.Array, cmax: int) -> jax.Array:
    return jnp.arange(cmax) < n


class BNMomentum(nnx.Variable):
    """A BatchNorm's running-statistics momentum (state, so calibration can change it)."""


class ElasticBN(nnx.Module):
    """BatchNorm over the largest width; statistics update only where ``mask`` is set.

    Matches ``nnx.BatchNorm`` in evaluation (``(x - mean) / sqrt(var + eps) * scale + bias``,
    biased batch variance for the running estimate).
    """

    def __init__(self, c: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        self.scale = nnx.Param(jnp.ones((c,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((c,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((c,), jnp.float32))
        self.momentum = BNMomentum(jnp.float32(momentum))
        self.eps = eps
        self.use_running_average = False

    def params(self, sl: slice = slice(None)) -> tuple[jax.Array, ...]:
        """``(scale, bias, mean, var)`` of the channels ``sl``."""
        return tuple(v[...][sl] for v in (self.scale, self.bias, self.mean, self.var))

    def apply(
        self, x: jax.Array, mask: jax.Array, params: tuple[jax.Array, ...]
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Normalise ``x`` with ``params`` (:meth:`params`, possibly a channel slice);
        returns the output and the updated running mean and variance (unchanged in
        evaluation), which the caller stores."""
        scale, bias, mean, var = params
        if not self.use_running_average:
            axes = tuple(range(x.ndim - 1))
            bmean = jnp.mean(x, axes)
            bvar = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(bmean), 0.0)
            m = self.momentum[...]
            new_mean = jnp.where(mask, (1 - m) * mean + m * jax.lax.stop_gradient(bmean), mean)
            new_var = jnp.where(mask, (1 - m) * var + m * jax.lax.stop_gradient(bvar), var)
            mean, var = bmean, bvar
        else:
            new_mean, new_var = mean, var
        y = (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias
        return jnp.where(mask, y, 0.0), new_mean, new_var

    def store(self, mean: jax.Array, var: jax.Array) -> None:
        if not self.use_running_average:
            self.mean[...] = mean
            self.var[...] = var

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        y, mean, var = self.apply(x, mask, self.params())
        self.store(mean, var)
        return y


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_out: int) -> jax.Array:
    """OFA's init: ``kaiming_normal_(mode="fan_out")`` (drawn with numpy: initialising a
    supernet of a hundred arrays op by op through jax.random costs seconds of compiles)."""
    return jnp.asarray(rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / fan_out))


class ElasticDWConv(nnx.Module):
    """Depthwise conv with elastic kernel size (and OFA's kernel transformation matrices)."""

    def __init__(
        self, c: int, kernels: tuple[int, ...], transform: bool, impl: str, rng: np.random.Generator
    ) -> None:
        kmax = max(kernels)
        self.kernels = tuple(sorted(kernels))
        self.kernel = nnx.Param(_he(rng, (kmax, kmax, c), kmax * kmax))
        self.transform = transform
        self.impl = impl
        mats = {}
        if transform:
            for big, small in zip(self.kernels[::-1], self.kernels[::-1][1:], strict=False):
                mats[f"{big}to{small}"] = nnx.Param(jnp.eye(small * small, dtype=jnp.float32))
        self.matrices = nnx.Dict(mats)

    def kernel_for(self, k: int) -> jax.Array:
        """The ``(k, k, C)`` kernel of kernel size ``k`` (static)."""
        w = self.kernel[...]
        kmax = w.shape[0]
        if not self.transform:
            s = (kmax - k) // 2
            return w[s : s + k, s : s + k]
        cur, cur_k = w, kmax
        for big in self.kernels[::-1]:
            if big <= k or big != cur_k:
                continue
            small = self.kernels[self.kernels.index(big) - 1]
            s = (big - small) // 2
            crop = cur[s : s + small, s : s + small].reshape(small * small, -1)
            cur = (self.matrices[f"{big}to{small}"][...] @ crop).reshape(small, small, -1)
            cur_k = small
            if small == k:
                break
        return cur

    def all_kernels(self) -> tuple[jax.Array, ...]:
        """The kernel of every kernel size, ascending."""
        return tuple(self.kernel_for(k) for k in self.kernels)

    def apply(
        self, x: jax.Array, kernels: tuple[jax.Array, ...], ks: jax.Array, stride: int
    ) -> jax.Array:
        """The depthwise conv of traced kernel size ``ks`` with ``kernels``
        (:meth:`all_kernels`, possibly a channel slice of each)."""
        impl = self.impl
        if len(kernels) == 1:
            return depthwise_conv(x, kernels[0], stride, impl)
        # Only the chosen kernel size runs (``lax.switch``): a 3x3 subnet pays 9 taps, not the
        # 49 of a zero-padded 7x7 kernel.
        index = sum((ks > k).astype(jnp.int32) for k in self.kernels[:-1])
        branches = [
            (lambda x, ws, i=i: depthwise_conv(x, ws[i], stride, impl)) for i in range(len(kernels))
        ]
        return jax.lax.switch(index, branches, x, kernels)

    def __call__(
        self, x: jax.Array, ks: jax.Array, stride: int, fixed_k: int | None = None
    ) -> jax.Array:
        """``fixed_k`` (static) replaces the traced ``ks``: that kernel only, no switch."""
        if len(self.kernels) == 1:
            return depthwise_conv(x, self.kernel[...], stride, self.impl)
        if fixed_k is not None:
            return depthwise_conv(x, self.kernel_for(fixed_k), stride, self.impl)
        return self.apply(x, self.all_kernels(), ks, stride)


class Dense(nnx.Module):
    """A 1x1 conv / linear layer as an ``(in, out)`` matrix."""

    def __init__(
        self, cin: int, cout: int, bias: bool, rng: np.random.Generator, fan: str = "out"
    ) -> None:
        if fan == "linear":  # OFA's init_model for nn.Linear: uniform(+-1/sqrt(in))
            lim = 1.0 / np.sqrt(cin)
            self.kernel = nnx.Param(
                jnp.asarray(rng.uniform(-lim, lim, (cin, cout)).astype(np.float32))
            )
        else:
            self.kernel = nnx.Param(_he(rng, (cin, cout), cout))
        self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32)) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = pointwise(x, self.kernel[...])
        return y if self.bias is None else y + self.bias[...]


class ElasticSE(nnx.Module):
    """OFA's ``DynamicSE``: the reduce layer's first ``make_divisible(mid // 4)`` channels."""

    def __init__(self, c: int, acts: tuple[str, str], rng: np.random.Generator) -> None:
        cmid = _se_mid(c)
        self.reduce = Dense(c, cmid, True, rng)
        self.expand = Dense(cmid, c, True, rng)
        self.acts = acts

    def __call__(self, x: jax.Array, se_mid: jax.Array) -> jax.Array:
        y = jnp.mean(x, axis=(1, 2), keepdims=True)
        y = self.reduce(y)
        y = act_fn(self.acts[0], jnp.where(_mask(se_mid, y.shape[-1]), y, 0.0))
        y = act_fn(self.acts[1], self.expand(y))
        return x * y


class ElasticMBBlock(nnx.Module):
    """``MBConvLayer`` with elastic kernel, middle width and output width."""

    def __init__(
        self,
        cin: int,
        mid: int,
        cout: int,
        stage: StageLayout,
        layout: NetLayout,
        impl: str,
        rng: np.random.Generator,
    ) -> None:
        mom, eps = layout.bn
        self.expand = stage.max_expand != 1
        if self.expand:
            self.ib = Dense(cin, mid, False, rng)
            self.ib_bn = ElasticBN(mid, mom, eps)
        self.dw = ElasticDWConv(mid, stage.kernels, layout.kernel_transform, impl, rng)
        self.dw_bn = ElasticBN(mid, mom, eps)
        self.se = ElasticSE(mid, layout.se_acts, rng) if stage.se else None
        self.pl = Dense(mid, cout, False, rng)
        self.pl_bn = ElasticBN(cout, mom, eps)
        self.act = stage.act
        cuts = {_mid(cin, e) for e in stage.expands} if self.expand else set()
        self.bounds = (0, *sorted(c for c in cuts if 0 < c < mid), mid)
        self.chunked = len(self.bounds) > 2

    def __call__(
        self,
        x: jax.Array,
        ks: jax.Array,
        mid: jax.Array,
        se_mid: jax.Array,
        cout: jax.Array,
        stride: int,
        active: jax.Array | bool,
        fixed: tuple[int, int] | None = None,
    ) -> jax.Array:
        """``fixed`` (static): the layer's ``(kernel, middle width)`` of a
        :class:`FixedSubnet`, for a block that runs (``active`` is then True)."""
        if self.chunked:
            return self._chunked(x, ks, mid, se_mid, cout, stride, active, fixed)
        if self.expand:
            mmask = _mask(mid, self.ib.kernel[...].shape[1]) & active
            x = act_fn(self.act, self.ib_bn(self.ib(x), mmask))
        else:
            mmask = _mask(mid, x.shape[-1]) & active
        fixed_k = None if fixed is None else fixed[0]
        x = act_fn(self.act, self.dw_bn(self.dw(x, ks, stride, fixed_k), mmask))
        if self.se is not None:
            x = self.se(x, se_mid)
        omask = _mask(cout, self.pl.kernel[...].shape[1]) & active
        return self.pl_bn(self.pl(x), omask)

    def _chunked(
        self,
        x: jax.Array,
        ks: jax.Array,
        mid: jax.Array,
        se_mid: jax.Array,
        cout: jax.Array,
        stride: int,
        active: jax.Array | bool,
        fixed: tuple[int, int] | None = None,
    ) -> jax.Array:
        """The block with its middle channels in chunks (``self.bounds``): chunk ``i`` holds
        channels ``bounds[i]:bounds[i+1]``, is computed only when ``mid > bounds[i]``
        (``lax.cond``) and adds its share of the point-linear product. Every op on the middle
        channels (inverted bottleneck, its BN, the depthwise conv, its BN, SE pooling and
        gating) acts per channel, so a subnet with a smaller expand ratio pays only for its own
        width. A skipped chunk costs the zero-filling of its saved activations (JAX's
        ``cond`` returns the residuals of the branch not taken as zeros), which is why the
        chunks keep only their conv outputs for the backward pass. With ``fixed``
        (static ``(kernel, middle width)``) the chunks the width uses run with no ``cond``,
        the others are left out, and the depthwise conv has the one kernel."""
        b = self.bounds
        act = self.act
        wib, wpl = self.ib.kernel[...], self.pl.kernel[...]
        if fixed is None:
            kernels = self.dw.all_kernels()
            n_run = len(b) - 1
        else:
            kernels = (self.dw.kernel_for(fixed[0]),)
            n_run = sum(1 for lo in b[:-1] if lo < fixed[1])
        ib_bn, dw_bn, dw = self.ib_bn, self.dw_bn, self.dw

        def front(x, p):
            """inverted bottleneck -> BN -> act -> depthwise -> BN -> act, one chunk."""
            w, ibp, kern, dwp, mask = p
            h = _saved(pointwise(x, w))
            h, im, iv = ib_bn.apply(h, mask, ibp)
            h = _saved(dw.apply(act_fn(act, h), kern, ks, stride))
            h, dm, dv = dw_bn.apply(h, mask, dwp)
            return act_fn(act, h), (im, iv, dm, dv)

        if fixed is None:
            # Behind a ``cond``, each saved activation of a skipped chunk is zero-filled: a
            # chunk saves only its two conv outputs and recomputes its BN and activations in
            # the backward pass (eight random subnets' steps 3-14% faster, 10% in all; the
            # smallest's traced 0.27 -> 0.24 s, 0.22 s without ``prevent_cse``, which only
            # guards against CSE outside a cond and costs reduce-precision ops). A fixed
            # subnet has no conds; there the recomputation cost more than it saved on the
            # largest (0.57 -> 0.60 s).
            front = jax.checkpoint(front, policy=_SAVE_CONVS, prevent_cse=False)

        chunks = []
        for i in range(len(b) - 1):
            sl = slice(b[i], b[i + 1])
            mask = (jnp.arange(b[i], b[i + 1]) < mid) & active
            p = (wib[:, sl], ib_bn.params(sl), tuple(k[..., sl] for k in kernels))
            chunks.append((sl, (*p, dw_bn.params(sl), mask)))

        def when(i, run, skip, *args):
            """``run(*args)`` when chunk ``i`` is active, else ``skip(*args)``."""
            if fixed is not None or (i == 0 and active is True):
                return run(*args)
            return jax.lax.cond((mid > b[i]) & active, run, skip, *args)

        def unchanged(p):
            (_, (_, _, im, iv), _, (_, _, dm, dv), _) = p
            return im, iv, dm, dv

        stats = []
        left_out = [unchanged(p) for _, p in chunks[n_run:]]
        chunks = chunks[:n_run]
        if self.se is None:

            def run(x, p, wp):
                h, st = front(x, p)
                return pointwise(h, wp), st

            y = None
            for i, (sl, p) in enumerate(chunks):
                out_shape = jax.eval_shape(lambda x, p, wp: run(x, p, wp)[0], x, p, wpl[sl])

                def skip(x, p, wp, shape=out_shape):
                    return jnp.zeros(shape.shape, shape.dtype), unchanged(p)

                part, st = when(i, run, skip, x, p, wpl[sl])
                y = part if y is None else y + part
                stats.append(st)
        else:
            se = self.se
            wr, br = se.reduce.kernel[...], se.reduce.bias[...]
            we, be = se.expand.kernel[...], se.expand.bias[...]

            def run_front(x, p, wr_sl):
                h, st = front(x, p)
                return h, jnp.mean(h, axis=(1, 2)) @ wr_sl, st

            hs, z = [], br
            for i, (sl, p) in enumerate(chunks):
                shapes = jax.eval_shape(lambda x, p, w: run_front(x, p, w)[:2], x, p, wr[sl])

                def skip_front(x, p, w, shapes=shapes):
                    h, zz = (jnp.zeros(s.shape, s.dtype) for s in shapes)
                    return h, zz, unchanged(p)

                h, zi, st = when(i, run_front, skip_front, x, p, wr[sl])
                hs.append(h)
                z = z + zi
                stats.append(st)
            z = act_fn(se.acts[0], jnp.where(_mask(se_mid, z.shape[-1]), z, 0.0))
            y = None
            for i, ((sl, _), h) in enumerate(zip(chunks, hs, strict=True)):

                def run_back(h, z, we_sl, be_sl, wp):
                    gate = act_fn(se.acts[1], z @ we_sl + be_sl)
                    return pointwise(h * gate[:, None, None, :], wp)

                shape = jax.eval_shape(run_back, h, z, we[:, sl], be[sl], wpl[sl])

                def skip_back(*args, shape=shape):
                    return jnp.zeros(shape.shape, shape.dtype)

                part = when(i, run_back, skip_back, h, z, we[:, sl], be[sl], wpl[sl])
                y = part if y is None else y + part
        im, iv, dm, dv = (jnp.concatenate(c) for c in zip(*stats, *left_out, strict=True))
        ib_bn.store(im, iv)
        dw_bn.store(dm, dv)
        omask = _mask(cout, wpl.shape[1]) & active
        return self.pl_bn(y, omask)


class ElasticMBNet(nnx.Module):
    """An elastic MobileNet over a :class:`NetLayout` (OFA-MobileNetV3, BigNAS).

    Call with an input batch ``(B, H, W, C)`` and an :data:`Arch` (traced).

    Args:
        layout: the static structure at its largest.
        dw_impl: depthwise conv formulation (``native``, ``shift`` or ``xla``; default
            :func:`nas.oneshot.default_dw_impl`).
        seed: initialisation seed (dropout uses ``seed + 1``).
    """

    def __init__(self, layout: NetLayout, dw_impl: str | None = None, seed: int = 0) -> None:
        dw_impl = dw_impl or default_dw_impl()
        rngs = nnx.Rngs(dropout=seed + 1)
        rng = np.random.default_rng(seed)
        self.layout = layout
        mom, eps = layout.bn
        self.stem = nnx.Param(
            _he(rng, (3, 3, layout.in_channels, layout.stem_width), 9 * layout.stem_width)
        )
        self.stem_bn = ElasticBN(layout.stem_width, mom, eps)
        blocks = []
        prev = layout.stem_width
        mids = layout.max_mids()
        li = 0
        for s in layout.stages:
            for j in range(s.max_depth):
                cin = prev if j == 0 else s.max_width
                blocks.append(ElasticMBBlock(cin, mids[li], s.max_width, s, layout, dw_impl, rng))
                li += 1
            prev = s.max_width
        self.blocks = nnx.List(blocks)
        self.head = Dense(prev, layout.head_width, False, rng)
        self.head_bn = ElasticBN(layout.head_width, mom, eps)
        self.feature_mix = (
            Dense(layout.head_width, layout.feature_mix, False, rng) if layout.feature_mix else None
        )
        last = layout.feature_mix or layout.head_width
        self.classifier = Dense(last, layout.n_classes, True, rng, fan="linear")
        self.dropout = nnx.Dropout(layout.dropout, rngs=rngs) if layout.dropout > 0 else None

    def __call__(
        self,
        x: jax.Array,
        arch: Mapping[str, jax.Array],
        full: bool = False,
        fixed: FixedSubnet | None = None,
    ) -> jax.Array:
        """The subnet ``arch``'s logits. ``fixed`` (static) promises that ``arch`` has its
        depths, kernels and middle widths: the subnet then runs without a ``cond`` or
        ``switch`` (:class:`FixedSubnet`). ``full`` is ``fixed`` for the largest subnet
        (:meth:`max_arch_arrays`: a sandwich step's largest child, a distillation teacher)."""
        L = self.layout
        if full:
            fixed = FixedSubnet.of(self.max_arch_arrays())
        x = im2col_conv(x, self.stem[...], 2)
        x = act_fn(L.stem_act, self.stem_bn(x, _mask(arch["stem"], L.stem_width)))
        li = 0
        for si, s in enumerate(L.stages):
            for j in range(s.max_depth):
                blk = self.blocks[li]
                ks, mid, se_mid = arch["ks"][li], arch["mid"][li], arch["se_mid"][li]
                width = arch["width"][si]
                if fixed is not None:
                    if j < fixed.depths[si]:  # a block beyond the depth is left out
                        lf = (fixed.ks[li], fixed.mids[li])
                        y = blk(x, ks, mid, se_mid, width, s.stride if j == 0 else 1, True, lf)
                        x = y + x if j > 0 or s.first_residual else y
                elif j == 0:
                    y = blk(x, ks, mid, se_mid, width, s.stride, True)
                    x = y + x if s.first_residual else y
                else:
                    # An inactive block is skipped, not computed and discarded: a subnet
                    # pays only for its own depth (the block's BN statistics stay as they are).
                    active = j < arch["depth"][si]
                    x = _block_if(active, blk, x, (ks, mid, se_mid, width))
                li += 1
        hmask = _mask(arch["head"], L.head_width)
        if L.head_before_pool:
            x = act_fn(L.head_act, self.head_bn(self.head(x), hmask))
            x = jnp.mean(x, axis=(1, 2))
        else:
            x = jnp.mean(x, axis=(1, 2))
            x = act_fn(L.head_act, self.head_bn(self.head(x), hmask))
        if self.feature_mix is not None:
            x = act_fn(L.head_act, self.feature_mix(x))
        if self.dropout is not None:
            # ``drop`` (optional, traced) switches dropout per subnet: BigNAS regularises
            # only the largest child of a sandwich step.
            x = jnp.where(arch.get("drop", 1) > 0, self.dropout(x), x)
        return self.classifier(x)

    def max_choice(self) -> SubnetChoice:
        """The largest subnet."""
        L = self.layout
        return SubnetChoice(
            stem=L.stem_width,
            widths=tuple(s.max_width for s in L.stages),
            depths=tuple(s.max_depth for s in L.stages),
            ks=tuple(max(s.kernels) for s in L.stages for _ in range(s.max_depth)),
            expand=tuple(s.max_expand for s in L.stages for _ in range(s.max_depth)),
            head=L.head_width,
        )

    def max_arch_arrays(self) -> dict[str, np.ndarray]:
        """The largest subnet as arrays (the distillation teacher's setting)."""
        return encode_arch(self.layout, self.max_choice())

    # ---------------------------------------------------------------- weight surgery

    def reorganize_channels(self) -> None:
        """OFA's ``re_organize_middle_weights``: sort every block's middle channels by the L1
        norm of the point-linear weights they feed (most important first), permuting the
        inverted bottleneck, depthwise conv, BN and SE weights alike; SE's reduce channels are
        sorted by the L1 norm of the SE expand weights (blocks without an inverted bottleneck
        are left alone, as in OFA). The network function is unchanged;
        the smaller expand ratios then keep the most important channels."""
        for blk in self.blocks:
            if not blk.expand:  # no inverted bottleneck: the middle is the block's input
                continue
            imp = np.abs(np.asarray(blk.pl.kernel[...])).sum(axis=1)
            idx = np.argsort(-imp, kind="stable")
            blk.pl.kernel[...] = blk.pl.kernel[...][idx]
            _permute_bn(blk.dw_bn, idx)
            blk.dw.kernel[...] = blk.dw.kernel[...][..., idx]
            if blk.se is not None:
                se = blk.se
                se.expand.kernel[...] = se.expand.kernel[...][:, idx]
                se.expand.bias[...] = se.expand.bias[...][idx]
                se.reduce.kernel[...] = se.reduce.kernel[...][idx]
                se_imp = np.abs(np.asarray(se.expand.kernel[...])).sum(axis=1)
                sidx = np.argsort(-se_imp, kind="stable")
                se.expand.kernel[...] = se.expand.kernel[...][sidx]
                se.reduce.kernel[...] = se.reduce.kernel[...][:, sidx]
                se.reduce.bias[...] = se.reduce.bias[...][sidx]
            _permute_bn(blk.ib_bn, idx)
            blk.ib.kernel[...] = blk.ib.kernel[...][:, idx]

    def set_bn_momentum(self, momentum: float) -> None:
        """Set every BatchNorm's running-statistics momentum (PyTorch convention)."""
        for _, m in nnx.iter_modules(self):
            if isinstance(m, ElasticBN):
                m.momentum[...] = jnp.float32(momentum)


def _block_if(active: jax.Array, blk: ElasticMBBlock, x: jax.Array, choice: tuple) -> jax.Array:
    """``blk(x) + x`` when ``active``, else ``x``, through ``lax.cond``: only the BatchNorm
    statistics leave the branches (the weights are read, never written, so this also works
    where they are traced at another level, as in a training step's scan over subnets)."""
    gdef, stats, rest = nnx.split(blk, nnx.BatchStat, ...)

    def run(stats, x):
        b = nnx.merge(gdef, stats, rest)
        y = b(x, *choice, 1, True) + x
        return y, nnx.state(b, nnx.BatchStat)

    def skip(stats, x):
        return x, stats

    y, stats = jax.lax.cond(active, run, skip, stats, x)
    if not blk.dw_bn.use_running_average:  # evaluation (a distillation teacher) writes nothing
        nnx.update(blk, stats)
    return y


def _permute_bn(bn: ElasticBN, idx: np.ndarray) -> None:
    for v in (bn.scale, bn.bias, bn.mean, bn.var):
        v[...] = v[...][idx]


_OFA_ACT = {"hswish": "h_swish", "relu": "relu", "relu6": "relu6", "swish": "swish"}


def choice_spec(layout: NetLayout, choice: SubnetChoice) -> tuple[Any, list[int]]:
    """The standalone network (an OFA :class:`~nas.search_spaces.ofa.network.NetSpec`) of a
    subnet, and the supernet index of each of its blocks (for scopes ``blocks/<i>``)."""
    from nas.search_spaces.ofa.network import ConvSpec, LinearSpec, MBBlock, NetSpec

    blocks, ids = [], []
    prev = choice.stem
    li = 0
    for si, s in enumerate(layout.stages):
        w = choice.widths[si]
        for j in range(s.max_depth):
            if j < choice.depths[si]:
                cin = prev if j == 0 else w
                e = choice.expand[li]
                mid = cin if s.max_expand == 1 else _mid(cin, e)
                blocks.append(
                    MBBlock(
                        out_channels=w,
                        kernel=choice.ks[li],
                        stride=s.stride if j == 0 else 1,
                        expand_ratio=1 if s.max_expand == 1 else e,
                        mid_channels=mid,
                        act=_OFA_ACT[s.act],
                        use_se=s.se,
                        residual=j > 0 or s.first_residual,
                    )
                )
                ids.append(li)
            li += 1
        prev = w
    head_act = _OFA_ACT[layout.head_act]
    head = ConvSpec(choice.head, 1, 1, act=head_act)
    mbv3 = bool(layout.feature_mix)
    spec = NetSpec(
        family="mbv3" if mbv3 else "proxyless",
        first_conv=ConvSpec(choice.stem, 3, 2, act=_OFA_ACT[layout.stem_act]),
        blocks=tuple(blocks),
        final_expand=head if mbv3 else None,
        feature_mix=ConvSpec(layout.feature_mix, 1, 1, use_bn=False, act=head_act)
        if mbv3
        else head,
        classifier=LinearSpec(layout.n_classes, True, layout.dropout),
        bn=layout.bn,
    )
    return spec, ids


# --------------------------------------------------------------------------------------
# OFA-MobileNetV3
# --------------------------------------------------------------------------------------


def ofa_layout(
    width_mult: float = 1.0, n_classes: int = 1000, in_channels: int = 3, dropout: float = 0.1
) -> NetLayout:
    """The OFA-MobileNetV3 supernet (``OFAMobileNetV3``, ks {3,5,7}, e {3,4,6}, d {2,3,4})."""
    from nas.search_spaces.ofa import network as net

    w = [net._width(b, width_mult) for b in net.MBV3_BASE_WIDTH[:-2]]
    stages = [
        StageLayout(
            w[1], net.MBV3_STRIDES[0], net.MBV3_ACTS[0], net.MBV3_SE[0], 1, (3,), 1, w[0] == w[1]
        )
    ]
    for i in range(net.N_UNITS):
        stages.append(
            StageLayout(
                w[2 + i],
                net.MBV3_STRIDES[1 + i],
                "hswish" if net.MBV3_ACTS[1 + i] == "h_swish" else net.MBV3_ACTS[1 + i],
                net.MBV3_SE[1 + i],
                net.MAX_DEPTH,
                net.KS_CHOICES,
                max(net.E_CHOICES),
                expands=net.E_CHOICES,
            )
        )
    return NetLayout(
        in_channels=in_channels,
        stem_width=w[0],
        stem_act="hswish",
        stages=tuple(stages),
        head_width=net._width(net.MBV3_BASE_WIDTH[-2], width_mult),
        head_act="hswish",
        feature_mix=net._width(net.MBV3_BASE_WIDTH[-1], width_mult),
        n_classes=n_classes,
        dropout=dropout,
        kernel_transform=True,
        se_acts=("relu", "hsigmoid"),
        bn=(0.1, 1e-5),
    )


def ofa_choice(layout: NetLayout, genotype: Any) -> SubnetChoice:
    """The :class:`SubnetChoice` of an OFA-MobileNetV3 elastic genotype."""
    from nas.search_spaces.ofa.space import OFAGenotype

    if not isinstance(genotype, OFAGenotype):
        raise InvalidGenotype(f"ofa supernet: not an ofa elastic genotype: {genotype!r}")
    return SubnetChoice(
        stem=layout.stem_width,
        widths=tuple(s.max_width for s in layout.stages),
        depths=(1, *genotype.d),
        ks=(3, *genotype.ks),
        expand=(1, *genotype.e),
        head=layout.head_width,
    )


class OFASupernet(ElasticMBNet):
    """The OFA-MobileNetV3 elastic supernet of an :class:`~nas.search_spaces.ofa.space.OFASpace`.

    Args:
        space: the ``ofa`` space (its width multiplier sets the widths).
        dataset: ``imagenet`` (3 channels, 1000 classes) or ``digits`` (1 channel, 10).
        dw_impl: depthwise formulation.
        seed: initialisation seed.
    """

    def __init__(
        self, space: Any, dataset: str = "digits", dw_impl: str | None = None, seed: int = 0
    ):
        from nas.search_spaces.ofa import network as net

        shape, classes = net.DATASETS[space.check_dataset(dataset)]
        chans = shape[2] if shape else 3
        self.space_name = space.name
        self.dataset = dataset
        super().__init__(ofa_layout(space.width_mult, classes, chans, space.dropout), dw_impl, seed)

    def arch(self, genotype: Any) -> dict[str, np.ndarray]:
        """The traced-array form of an ``ofa`` genotype."""
        return encode_arch(self.layout, ofa_choice(self.layout, genotype))


def with_layout(layout: NetLayout, **changes: Any) -> NetLayout:
    return replace(layout, **changes)
