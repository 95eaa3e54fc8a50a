"""The SPOS supernet in flax.nnx: 20 choice layers x 4 ShuffleNetV2 blocks, weights shared.

Every layer holds its four candidate blocks (Shuffle 3x3, 5x5, 7x7, Xception; each with its
own weights, BatchNorms and, in a stage's first layer, its own projection branch), as in
Megvii's SPOS supernet. The path (one block id per layer) is a traced ``int32[20]`` array:
each layer picks its block with :func:`jax.lax.switch` (only the chosen block computes) and
the later layers of a stage, which all have the same shapes, are stacked and run with
:func:`jax.lax.scan`, so the compiled program holds 8 layer bodies instead of 20 and one
compile serves all 4^20 paths (for training, BN recalibration and evaluation alike).

Modules are named after the IR's scopes (``features/<layer>/pw``, ``.../proj/dw``,
``first_conv``, ``conv_last``, ``head/classifier``), so
:func:`nas.oneshot.extract_model` copies a path's weights into the standalone model built
from :mod:`search_spaces.spos.network` -- same outputs, no retraining.

Channel search (width scales) is not part of this supernet: it would need Megvii's
max-width weights with channel masks; a space with ``channel_search=True`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

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
from search_spaces.spos.network import DATASETS, REPEATS, NetConfig, mid_channels
from search_spaces.spos.ops import BLOCKS, KERNELS


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
        block: one of :data:`~search_spaces.spos.ops.BLOCKS`.
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
        else:
            self.dw1 = ConvBN(inp, inp, 3, s, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw1 = ConvBN(inp, mid, 1, 1, rngs=rngs, relu=True)
            self.dw2 = ConvBN(mid, mid, 3, 1, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw2 = ConvBN(mid, mid, 1, 1, rngs=rngs, relu=True)
            self.dw3 = ConvBN(mid, mid, 3, 1, rngs=rngs, depthwise=True, dw_impl=d)
            self.pw3 = ConvBN(mid, outputs, 1, 1, rngs=rngs, relu=True)
            self.main = ("dw1", "pw1", "dw2", "pw2", "dw3", "pw3")

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        if self.first:
            keep, m = self.proj(x, mode), x
        else:  # SPOS's split: even channels pass, odd channels enter the main branch
            keep, m = x[..., 0::2], x[..., 1::2]
        for name in self.main:
            m = getattr(self, name)(m, mode)
        return jnp.concatenate([keep, m], axis=-1)


def _choice(
    c_in: int, c_out: int, stride: int, first: bool, rngs: np.random.Generator, dw_impl: str
) -> Choice:
    mid = mid_channels(c_out, 1.0)
    return Choice(
        [SPOSBlock(b, c_in, c_out, mid, stride, first, rngs=rngs, dw_impl=dw_impl) for b in BLOCKS]
    )


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
    ) -> None:
        self.first = _choice(c_in, c_out, stride, True, rngs, dw_impl)
        rest = [_choice(c_out, c_out, 1, False, rngs, dw_impl) for _ in range(repeats - 1)]
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
    and a :class:`~nas.oneshot.Mode`.

    Args:
        dataset: the network variant (:data:`search_spaces.spos.network.DATASETS`).
        seed: initialisation seed.
        dw_impl: depthwise conv formulation, ``shift`` or ``xla`` (default: by backend).
        scan: run a stage's later layers as one ``lax.scan`` (smaller program, faster
            compile) rather than unrolled.
    """

    choices = (len(BLOCKS),) * sum(REPEATS)

    def __init__(
        self,
        dataset: str = "digits",
        seed: int = 0,
        dw_impl: str | None = None,
        scan: bool = True,
    ):
        if dataset not in DATASETS:
            raise ConfigError(f"spos has no network {dataset!r}; choose one of {list(DATASETS)}")
        cfg: NetConfig = DATASETS[dataset]
        self.dataset = dataset
        dw = dw_impl or default_dw_impl()
        rngs = np.random.default_rng(seed)
        self.first_conv = ConvBN(
            cfg.input_shape[-1], cfg.stem_channels, 3, cfg.stem_stride, rngs=rngs, relu=True
        )
        stages = []
        c = cfg.stem_channels
        for s, reps in enumerate(REPEATS):
            c_out = cfg.stage_channels[s]
            stages.append(_Stage(c, c_out, cfg.stage_strides[s], reps, rngs, dw, scan))
            c = c_out
        self.stages = nnx.List(stages)
        self.conv_last = ConvBN(c, cfg.last_channels, 1, 1, rngs=rngs, relu=True)
        self.classifier = Dense(cfg.last_channels, cfg.classes, rngs=rngs, bias=False)
        self.input_shape = cfg.input_shape
        # dropout (rate 0.1 in the IR) is left out of supernet training; evaluation is equal

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        x = self.first_conv(x, mode)
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
        if not getattr(genotype, "default_width", True):
            raise InvalidGenotype(
                "spos supernet: the supernet trains blocks only; width scales other than "
                f"1.0 are not supported ({genotype.to_str()})"
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
        for name in parts[2:]:
            module = getattr(module, name)
        return module, index


def build_supernet(dataset: str = "digits", seed: int = 0, **kwargs: Any) -> SPOSSupernet:
    """A freshly initialised SPOS supernet for a network variant."""
    return SPOSSupernet(dataset, seed, **kwargs)


def supernet_evaluator(space: Any, dataset: str | None = None, **options: Any):
    """The ``supernet`` evaluator of the SPOS space (see :mod:`nas.evaluators.oneshot`)."""
    from nas.evaluators.oneshot import OneShotEvaluator

    if getattr(space, "channel_search", False):
        raise ConfigError(
            "the SPOS supernet searches blocks only; use the spos space without channel search"
        )
    return OneShotEvaluator(space, dataset, build_supernet, **options)
