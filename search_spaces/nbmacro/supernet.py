"""A weight-sharing supernet for NAS-Bench-Macro: 8 layers x 3 candidates, path traced.

Each searchable layer holds its three candidates (``ops.layer_op`` as modules): identity
(no weights at a stride-1 layer; at a stage's first, stride-2 layer the space's 1x1 conv
stride 2 + BN), MobileNetV2 expand 3 kernel 3, MobileNetV2 expand 6 kernel 5. The path is a
traced ``int32[8]`` array; a layer picks its candidate with :func:`jax.lax.switch`, and the
later layers of a stage (identical shapes) run as one :func:`jax.lax.scan`, so one compiled
step serves all 6,561 architectures.

Modules follow the IR's scopes (``stem``, ``stage<s>/layer<l>/{pw,dw,pwl,downsample}``,
``out``, ``classifier``), so :func:`nas.oneshot.extract_model` moves a path's weights into
the standalone IR model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from nas.search_spaces.nbmacro.network import DATASETS, STAGES, NetConfig
from nas.search_spaces.nbmacro.ops import MBCONV, OPS

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


class _Identity(nnx.Module):
    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        return x


class _Downsample(nnx.Module):
    """The identity candidate of a layer that changes shape: 1x1 conv (stride) + BN."""

    def __init__(self, inp: int, oup: int, stride: int, rngs: np.random.Generator) -> None:
        self.downsample = ConvBN(inp, oup, 1, stride, rngs=rngs)

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        return self.downsample(x, mode)


class _InvertedResidual(nnx.Module):
    def __init__(
        self, inp: int, oup: int, stride: int, t: int, k: int, rngs: np.random.Generator, dw: str
    ) -> None:
        hidden = round(inp * t)
        self.pw = ConvBN(inp, hidden, 1, 1, rngs=rngs, relu=True)
        self.dw = ConvBN(
            hidden, hidden, k, stride, rngs=rngs, depthwise=True, relu=True, dw_impl=dw
        )
        self.pwl = ConvBN(hidden, oup, 1, 1, rngs=rngs)
        self.residual = stride == 1 and inp == oup

    def __call__(self, x: jax.Array, mode: Mode) -> jax.Array:
        y = self.pwl(self.dw(self.pw(x, mode), mode), mode)
        return y + x if self.residual else y


def _layer(inp: int, oup: int, stride: int, rngs: np.random.Generator, dw: str) -> Choice:
    cands: list[nnx.Module] = []
    for op in OPS:
        if op == "identity":
            shape_change = stride != 1 or inp != oup
            cands.append(_Downsample(inp, oup, stride, rngs) if shape_change else _Identity())
        else:
            t, k = MBCONV[op]
            cands.append(_InvertedResidual(inp, oup, stride, t, k, rngs, dw))
    return Choice(cands)


class _Stage(nnx.Module):
    def __init__(self, c: int, n: int, rngs: np.random.Generator, dw: str) -> None:
        self.first = _layer(c, 2 * c, 2, rngs, dw)
        self.rest = stack_modules([_layer(2 * c, 2 * c, 1, rngs, dw) for _ in range(n - 1)])

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        return scan_layers(self.rest, self.first(x, path[0], mode), path[1:], mode)


class MacroSupernet(PathSupernet):
    """The NAS-Bench-Macro supernet of one network variant (``cifar10`` or ``digits``).

    Call it as ``model(x, path, mode)`` with NHWC images and an ``int32[8]`` path of
    candidate ids (0 identity, 1 mb3_k3, 2 mb6_k5).
    """

    choices = (len(OPS),) * sum(STAGES)

    def __init__(self, dataset: str = "digits", seed: int = 0, dw_impl: str | None = None):
        if dataset not in DATASETS:
            raise ConfigError(f"nbmacro has no network {dataset!r}; choose one of {list(DATASETS)}")
        cfg: NetConfig = DATASETS[dataset]
        self.dataset = dataset
        self.input_shape = cfg.input_shape
        dw = dw_impl or default_dw_impl()
        rngs = np.random.default_rng(seed)
        c = cfg.init_channels
        self.stem = ConvBN(cfg.input_shape[-1], c, 3, 1, rngs=rngs, relu=True)
        stages = []
        for n in STAGES:
            stages.append(_Stage(c, n, rngs, dw))
            c *= 2
        self.stages = nnx.List(stages)
        self.out = ConvBN(c, cfg.last_channels, 1, 1, rngs=rngs, relu=True)
        self.classifier = Dense(cfg.last_channels, cfg.classes, rngs=rngs, bias=True)

    def __call__(self, x: jax.Array, path: jax.Array, mode: Mode) -> jax.Array:
        x = self.stem(x, mode)
        pos = 0
        for stage, n in zip(self.stages, STAGES, strict=True):
            x = stage(x, path[pos : pos + n], mode)
            pos += n
        x = self.out(x, mode)
        return self.classifier(x.mean(axis=(1, 2)))

    def path_of(self, genotype: Any) -> np.ndarray:
        ops = getattr(genotype, "ops", None)
        if ops is None:
            raise InvalidGenotype(f"nbmacro supernet: not a NAS-Bench-Macro genotype: {genotype!r}")
        return np.asarray(ops, np.int32)

    def locate(self, scope: str, path: Sequence[int]) -> tuple[nnx.Module, int | None]:
        if scope in ("stem", "out", "classifier"):
            return getattr(self, scope), None
        parts = scope.split("/")
        if len(parts) < 3 or not parts[1].startswith("layer"):
            raise GraphError(f"nbmacro supernet: no weights for IR scope {scope!r}")
        layer = int(parts[1][len("layer") :])
        stage = next(s for s in range(len(STAGES)) if layer < sum(STAGES[: s + 1]))
        j = layer - sum(STAGES[:stage])
        cand = int(path[layer])
        if j == 0:
            module, index = self.stages[stage].first.candidates[cand], None
        else:
            module, index = self.stages[stage].rest.candidates[cand], j - 1
        for name in parts[2:]:
            module = getattr(module, name)
        return module, index


class MacroNet(PathNet):
    """The NAS-Bench-Macro supernet under the :class:`~nas.supernet.Supernet` protocol."""

    def build(self, space: Any, dataset: str, seed: int) -> MacroSupernet:
        return MacroSupernet(dataset, seed)
