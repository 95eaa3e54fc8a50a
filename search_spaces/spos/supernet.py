"""The SPOS supernet in flax.nnx: 20 choice layers x 4 ShuffleNetV2 blocks, weights shared.

Every layer holds its four candidate blocks (Shuffle 3x3, 5x5, 7x7, Xception; each with its
own weights, BatchNorms and, in a stage's first layer, its own projection branch), as in
Megvii's SPOS supernet. The path (one block id per layer) is a traced ``int32[20]`` array:
each layer picks its block with :func:`jax.lax.switch` (only the chosen block computes) and
the later layers of a stage, which all have the same shapes, are stacked and run with
:func:`jax.lax.scan`, so the compiled program holds 8 layer bodies instead of 20 and one
compile serves all 4^20 paths (for training, BN recalibration and evaluation alike).

Channel search (``channel_search=True``, the ``spos-channels`` space) follows the paper's
channel choice block: every candidate holds the weights of its *largest* hidden width
(scale 2.0) and a width ``c`` uses the first ``c`` hidden channels of them, shared by all
widths. The path is then ``int32[40]``, 20 block ids followed by 20 scale indices (the
space's own index order). To keep one compiled program for every width, the slice is a
mask: the block computes at full width and each hidden activation (after its BatchNorm and
ReLU) is multiplied by a 0/1 mask of the first ``c`` channels, so the masked channels add
nothing downstream and receive zero gradients; BatchNorm works per channel, so its
statistics and affine parameters of the kept channels are those of the sliced block.

Modules are named after the IR's scopes (``features/<layer>/pw``, ``.../proj/dw``,
``first_conv``, ``conv_last``, ``head/classifier``), so
:func:`nas.oneshot.extract_model` copies a path's weights into the standalone model built
from :mod:`nas.search_spaces.spos.network` (with the path's widths: :meth:`SPOSSupernet.locate`
hands it the sliced weights) -- same outputs, no retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from nas.search_spaces.spos.network import DATASETS, REPEATS, NetConfig, mid_channels
from nas.search_spaces.spos.ops import BLOCKS, KERNELS
from nas.search_spaces.spos.space import LAYERS, SCALES

from nas.errors import ConfigError, GraphError, InvalidGenotype
from nas.oneshot import (
    Choice,
    ConvBN,
    Dense,
    Mode,
    PathSupernet,
    default_dw_impl,
    scan_layers,
    stack_modules,
)
from nas.path_supernet import PathNet


@dataclass(frozen=True, eq=False)
class _WidthMode(Mode):
    """A :class:`Mode` that also carries the current layer's hidden-channel mask (channel
    search): ``mask`` is a 0/1 ``float32[max width]`` array."""

    mask: Any = None


class _Proj(nnx.Module):
    """The projection branch of a stage's first block: depthwise k x k (stride) + 1x1."""

    def __init__(self, inp: int, k: int, stride: int, rngs: np.random.Generator, dw: str) -> None:
        self.dw = ConvBN(inp, inp, k, stride, rngs=rngs, depthwise=True, dw_impl=dw)
        self.pw = ConvBN(inp, inp, 1, 1, rngs=rngs, relu=True)

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        return self.pw(self.dw(x, mode), mode)


class SPOSBlock(nnx.Module):
    """One candidate block (``ops.choice_block`` as a module).

    Args:
        block: one of :data:`~nas.search_spaces.spos.ops.BLOCKS`.
        in_channels: channels of the block input.
        out_channels: channels of the block output.
        mid: hidden width of the main branch.
        stride: the block's stride (only a stage's first block downsamples).
        first: a stage's first block (projection branch + main branch on the whole input)
            rather than a channel-split block.
    """

    def __init__(
        self,
        block: str,
        in_channels: int,
        out_channels: int,
        mid: int,
        stride: int,
        first: bool,
        *,
        rngs: np.random.Generator,
        dw_impl: str = "xla",
    ) -> None:
        self.first = first
        inp = in_channels if first else in_channels // 2
        outputs = out_channels - inp
        s = stride
        d = dw_impl
        if first:
            self.proj = _Proj(inp, KERNELS.get(block, 3), stride, rngs, d)
        if block in KERNELS:
            k = KERNELS[block]
            self.pw = ConvBN(inp, mid, 1, 1, rngs=rngs, relu=True)
            self.dw = ConvBN(mid, mid, k, s, rngs=rngs, depthwise=True, dw_impl=d)
            self.pwl = ConvBN(mid, outputs, 1, 1, rngs=rngs, relu=True)
            self.main = ("pw", "dw", "pwl")
            self.mid_out = ("pw", "dw")
        else:
            self.dw1 = ConvBN(inp, inp, 3, s, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw1 = ConvBN(inp, mid, 1, 1, rngs=rngs, relu=True)
            self.dw2 = ConvBN(mid, mid, 3, 1, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw2 = ConvBN(mid, mid, 1, 1, rngs=rngs, relu=True)
            self.dw3 = ConvBN(mid, mid, 3, 1, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw3 = ConvBN(mid, outputs, 1, 1, rngs=rngs, relu=True)
            self.main = ("dw1", "pw1", "dw2", "pw2", "dw3", "pw3")
            self.mid_out = ("pw1", "dw2", "pw2", "dw3")

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        if self.first:
            keep, m = self.proj(x, mode), x
        else:  # SPOS's split: even channels pass, odd channels enter the main branch
            keep, m = x[..., 0::2], x[..., 1::2]
        mask = getattr(mode, "mask", None)
        for name in self.main:
            m = getattr(self, name)(m, mode)
            if mask is not None and name in self.mid_out:
                m = m * mask  # channel search: only the first c hidden channels exist
        return jnp.concatenate([keep, m], axis=-1)

    def cuts(self, name: str) -> tuple[bool, bool]:
        """Whether the main-branch conv ``name`` has hidden-width (input, output) channels."""
        i = self.main.index(name)
        depthwise = getattr(self, name).groups > 1
        cut_in = i > 0 and self.main[i - 1] in self.mid_out and not depthwise
        return cut_in, name in self.mid_out


class _ChannelChoice(Choice):
    """A choice layer with channel search: ``index`` is ``(block id, scale index)``.

    The chosen block runs at its maximum hidden width with the channels past the scale's
    width masked to zero (``widths[s]`` is the hidden width of scale index ``s``).
    """

    def __init__(self, candidates: Sequence[nnx.Module], widths: Sequence[int]) -> None:
        super().__init__(candidates)
        self.widths = tuple(int(w) for w in widths)

    def __call__(self, x: jax.Array, index: jax.Array, mode: Mode) -> jax.Array:
        s = jnp.clip(index[1], 0, len(self.widths) - 1)
        width = jnp.asarray(self.widths, jnp.int32)[s]
        mask = (jnp.arange(max(self.widths)) < width).astype(x.dtype)
        return super().__call__(x, index[0], _WidthMode(mode.train, mode.momentum, mask))


class _SlicedConvBN:
    """The first hidden channels of a max-width :class:`ConvBN`, as plain arrays with the
    attribute names :func:`nas.oneshot.extract_model` reads (``kernel``, ``bn.scale``,
    ``bn.bias``, ``bn.mean``, ``bn.var``; ``array[...]`` is the array itself): what
    :meth:`SPOSSupernet.locate` hands it for a path with channel search."""

    def __init__(self, kernel: np.ndarray, bn: dict[str, np.ndarray]) -> None:
        self.kernel = kernel
        self.bn = SimpleNamespace(**bn)


def _slice(conv: ConvBN, index: int | None, cuts: tuple[bool, bool], width: int) -> _SlicedConvBN:
    def take(v: nnx.Variable) -> np.ndarray:
        a = np.asarray(v[...])
        return a if index is None else a[index]

    cut_in, cut_out = cuts
    kernel = take(conv.kernel)
    if cut_in:
        kernel = kernel[:, :, :width, :]
    bn = {n: take(getattr(conv.bn, n)) for n in ("scale", "bias", "mean", "var")}
    if cut_out:
        kernel = kernel[..., :width]
        bn = {n: v[:width] for n, v in bn.items()}
    return _SlicedConvBN(kernel, bn)


def _choice(
    c_in: int,
    c_out: int,
    stride: int,
    first: bool,
    rngs: np.random.Generator,
    dw_impl: str,
    channel_search: bool,
) -> Choice:
    widths = [mid_channels(c_out, s) for s in SCALES] if channel_search else []
    mid = max(widths) if channel_search else mid_channels(c_out, 1.0)
    blocks = [
        SPOSBlock(b, c_in, c_out, mid, stride, first, rngs=rngs, dw_impl=dw_impl) for b in BLOCKS
    ]
    return _ChannelChoice(blocks, widths) if channel_search else Choice(blocks)


class _Stage(nnx.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        repeats: int,
        rngs: np.random.Generator,
        dw_impl: str,
        scan: bool,
        channel_search: bool,
    ) -> None:
        cs = channel_search
        self.first = _choice(c_in, c_out, stride, True, rngs, dw_impl, cs)
        rest = [_choice(c_out, c_out, 1, False, rngs, dw_impl, cs) for _ in range(repeats - 1)]
        self.scan = scan
        self.rest = stack_modules(rest) if scan else nnx.List(rest)

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        x = self.first(x, path[0], mode)
        if self.scan:
            return scan_layers(self.rest, x, path[1:], mode)
        for i, layer in enumerate(self.rest):
            x = layer(x, path[1 + i], mode)
        return x


class SPOSSupernet(PathSupernet):
    """The SPOS supernet of one network variant (``imagenet`` or ``digits``).

    Call it as ``model(x, path, mode)`` with NHWC images, an ``int32[20]`` path of block ids
    (``int32[40]``, block ids then scale indices, with channel search) and a
    :class:`~nas.oneshot.Mode`.

    Args:
        dataset: the network variant (:data:`nas.search_spaces.spos.network.DATASETS`).
        seed: initialisation seed.
        dw_impl: depthwise conv formulation, ``shift`` or ``xla`` (default: by backend).
        scan: run a stage's later layers as one ``lax.scan`` (smaller program, faster
            compile) rather than unrolled.
        channel_search: also choose each layer's hidden width (one of
            :data:`~nas.search_spaces.spos.space.SCALES`; max-width weights, masked).
    """

    choices = (len(BLOCKS),) * LAYERS

    def __init__(
        self,
        dataset: str = "digits",
        seed: int = 0,
        dw_impl: str | None = None,
        scan: bool = True,
        channel_search: bool = False,
    ):
        if dataset not in DATASETS:
            raise ConfigError(f"spos has no network {dataset!r}; choose one of {list(DATASETS)}")
        cfg: NetConfig = DATASETS[dataset]
        self.dataset = dataset
        self.channel_search = bool(channel_search)
        if self.channel_search:
            self.choices = (len(BLOCKS),) * LAYERS + (len(SCALES),) * LAYERS
        self.stage_channels = cfg.stage_channels
        dw = dw_impl or default_dw_impl()
        rngs = np.random.default_rng(seed)
        self.first_conv = ConvBN(
            cfg.input_shape[-1], cfg.stem_channels, 3, cfg.stem_stride, rngs=rngs, relu=True
        )
        stages = []
        c = cfg.stem_channels
        for s, reps in enumerate(REPEATS):
            c_out = cfg.stage_channels[s]
            stages.append(
                _Stage(c, c_out, cfg.stage_strides[s], reps, rngs, dw, scan, self.channel_search)
            )
            c = c_out
        self.stages = nnx.List(stages)
        self.conv_last = ConvBN(c, cfg.last_channels, 1, 1, rngs=rngs, relu=True)
        self.classifier = Dense(cfg.last_channels, cfg.classes, rngs=rngs, bias=False)
        self.input_shape = cfg.input_shape
        # dropout (rate 0.1 in the IR) is left out of supernet training; evaluation is equal

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        x = self.first_conv(x, mode)
        if self.channel_search:  # one (block id, scale index) row per layer
            path = jnp.stack([path[:LAYERS], path[LAYERS:]], axis=-1)
        pos = 0
        for stage, reps in zip(self.stages, REPEATS, strict=True):
            x = stage(x, path[pos : pos + reps], mode)
            pos += reps
        x = self.conv_last(x, mode)
        return self.classifier(jnp.mean(x, axis=(1, 2)))

    def path_of(self, genotype: Any) -> np.ndarray:
        blocks = getattr(genotype, "blocks", None)
        if blocks is None:
            raise InvalidGenotype(f"spos supernet: not an SPOS genotype: {genotype!r}")
        if self.channel_search:
            return np.asarray(list(blocks) + list(genotype.scales), np.int32)
        if not getattr(genotype, "default_width", True):
            raise InvalidGenotype(
                "spos supernet: this supernet trains blocks only; for width scales other "
                f"than 1.0 build it with channel_search=True ({genotype.to_str()})"
            )
        return np.asarray(blocks, np.int32)

    def locate(self, scope: str, path: Sequence[int]) -> tuple[nnx.Module, int | None]:
        if scope == "first_conv":
            return self.first_conv, None
        if scope == "conv_last":
            return self.conv_last, None
        if scope == "head/classifier":
            return self.classifier, None
        parts = scope.split("/")
        if len(parts) < 3 or parts[0] != "features" or not parts[1].isdigit():
            raise GraphError(f"spos supernet: no weights for IR scope {scope!r}")
        layer = int(parts[1])
        stage = next(s for s in range(len(REPEATS)) if layer < sum(REPEATS[: s + 1]))
        j = layer - sum(REPEATS[:stage])
        block_id = int(path[layer])
        if j == 0:
            module, index = self.stages[stage].first.candidates[block_id], None
        else:
            rest = self.stages[stage].rest
            if self.stages[stage].scan:
                module, index = rest.candidates[block_id], j - 1
            else:
                module, index = rest[j - 1].candidates[block_id], None
        block = module
        for name in parts[2:]:
            module = getattr(module, name)
        if self.channel_search and len(parts) == 3 and parts[2] in block.main:
            width = mid_channels(self.stage_channels[stage], SCALES[int(path[LAYERS + layer])])
            return _slice(module, index, block.cuts(parts[2]), width), None
        return module, index


class SPOSNet(PathNet):
    """The SPOS supernet under the :class:`~nas.supernet.Supernet` protocol (with width
    choices when the space searches channels)."""

    def build(self, space: Any, dataset: str, seed: int) -> SPOSSupernet:
        return SPOSSupernet(dataset, seed, channel_search=getattr(space, "channel_search", False))
