"""The NAS-Bench-Macro skeleton as an IR graph.

CIFAR-10 network (``Network`` in xiusu/NAS-Bench-Macro ``train/model.py``; paper Table 6):
3x3 conv (stride 1) to 32 channels + BN + ReLU; three stages of 2, 3, 3 searchable layers
whose first layer doubles the width with stride 2 (32x32x32 -> 16x16x64 -> 8x8x128 ->
4x4x256); a 1x1 conv to 1280 + BN + ReLU; global average pooling; a linear layer to 10
classes with bias.

The benchmark's ``params`` count every trainable number (BN gamma/beta and the classifier
bias included); its ``flops`` are conv multiply-accumulates plus the classifier's weight
count (``in_features * out_features``, no bias term).

``digits`` (8x8x1, 10 classes) keeps the skeleton with 16 stem channels and a 256-wide last
conv, for quick training (8x8 -> 4x4 -> 2x2 -> 1x1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nas.search_spaces.nbmacro.ops import OPS, conv_bn, layer_op

from nas.graph import ArchGraph, CostConvention

MACRO_CONVENTION = CostConvention(conv_bias=False, dense_bias=False, dense=True)

STAGES = (2, 3, 3)
"""Searchable layers per stage (8 in all)."""


@dataclass(frozen=True)
class NetConfig:
    input_shape: tuple[int, int, int]
    classes: int
    init_channels: int
    last_channels: int


DATASETS: dict[str, NetConfig] = {
    "cifar10": NetConfig((32, 32, 3), 10, 32, 1280),
    "digits": NetConfig((8, 8, 1), 10, 16, 256),
}


def build(ops: Sequence[int], cfg: NetConfig) -> ArchGraph:
    """The network for 8 candidate ids (indices into ``OPS``)."""
    g = ArchGraph(convention=MACRO_CONVENTION)
    x = g.add("input", shape=list(cfg.input_shape))
    x = conv_bn(g, x, cfg.init_channels, 3, 1, "stem", relu=True)
    c = cfg.init_channels
    layer = 0
    for stage, n in enumerate(STAGES):
        for i in range(n):
            scope = f"stage{stage}/layer{layer}"
            if i == 0:
                x = layer_op(g, OPS[ops[layer]], x, c, 2 * c, 2, scope)
                c *= 2
            else:
                x = layer_op(g, OPS[ops[layer]], x, c, c, 1, scope)
            layer += 1
    x = conv_bn(g, x, cfg.last_channels, 1, 1, "out", relu=True)
    x = g.add("global_pool", [x], scope="out")
    x = g.add("dense", [x], scope="classifier", out_features=cfg.classes, bias=True)
    g.add("output", [x])
    return g.finalize()
