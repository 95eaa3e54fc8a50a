"""The SPOS ShuffleNetV2 supernet skeleton as an IR graph.

ImageNet network (Megvii ``ShuffleNetV2_OneShot``, ``src/Evaluation/template/network.py``):
3x3 conv stride 2 to 16 channels + BN + ReLU, then four stages of 4, 4, 8, 4 choice blocks
with 64, 160, 320, 640 output channels, each stage opening with a stride-2 block, then a 1x1
conv to 1024 + BN + ReLU, global average pooling (``AvgPool2d(7)`` on the 7x7 map), dropout
0.1 and a linear layer to 1000 classes without bias. There is no max pool after the first
conv (unlike the hand-designed ShuffleNetV2): 224 -> 112 -> 56 -> 28 -> 14 -> 7. A block's
hidden width is ``int(out_channels // 2 * scale)`` with the channel-search scale (1.0 unless
searched).

SPOS counts FLOPs as conv multiply-accumulates plus the linear layer's weight count (its
``get_flops``); the classifier has no bias, so the convention has no bias terms.

``digits`` (8x8x1, 10 classes) is a small network of the same shape for quick training: a
stride-1 first conv to 8 channels, stages of 16, 32, 64, 128 channels with strides 1, 2, 2, 1
(8 -> 8 -> 4 -> 2 -> 2), a last conv to 256, the same 20 choice blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nas.search_spaces.spos.ops import BLOCKS, choice_block, conv_bn

from nas.graph import ArchGraph, CostConvention

SPOS_CONVENTION = CostConvention(conv_bias=False, dense_bias=False, dense=True)

REPEATS = (4, 4, 8, 4)
"""Choice blocks per stage (20 in all)."""


@dataclass(frozen=True)
class NetConfig:
    """The fixed skeleton around the 20 choice blocks."""

    input_shape: tuple[int, int, int]
    classes: int
    stem_channels: int
    stem_stride: int
    stage_channels: tuple[int, int, int, int]
    stage_strides: tuple[int, int, int, int]
    last_channels: int
    dropout: float = 0.1


DATASETS: dict[str, NetConfig] = {
    "imagenet": NetConfig((224, 224, 3), 1000, 16, 2, (64, 160, 320, 640), (2, 2, 2, 2), 1024),
    "digits": NetConfig((8, 8, 1), 10, 8, 1, (16, 32, 64, 128), (1, 2, 2, 1), 256),
}


def mid_channels(out_channels: int, scale: float) -> int:
    """A block's hidden width, computed as Megvii does (``int(outp // 2 * scale)``).

    Floored at 1 so that the narrow ``digits`` network stays valid at scale 0.2 (the ImageNet
    widths never reach the floor).
    """
    return max(1, int(out_channels // 2 * scale))


def build(blocks: Sequence[int], scales: Sequence[float], cfg: NetConfig) -> ArchGraph:
    """The network for 20 block choices (indices into ``BLOCKS``) and 20 width scales."""
    g = ArchGraph(convention=SPOS_CONVENTION)
    x = g.add("input", shape=list(cfg.input_shape))
    x = conv_bn(g, x, cfg.stem_channels, 3, cfg.stem_stride, "first_conv", relu=True)
    c = cfg.stem_channels
    layer = 0
    for stage, repeats in enumerate(REPEATS):
        c_out = cfg.stage_channels[stage]
        for i in range(repeats):
            first = i == 0
            x = choice_block(
                g,
                x,
                BLOCKS[blocks[layer]],
                c,
                c_out,
                mid_channels(c_out, scales[layer]),
                cfg.stage_strides[stage] if first else 1,
                first,
                f"features/{layer}",
            )
            c = c_out
            layer += 1
    x = conv_bn(g, x, cfg.last_channels, 1, 1, "conv_last", relu=True)
    x = g.add("global_pool", [x], scope="head")
    if cfg.dropout:
        x = g.add("dropout", [x], scope="head", rate=cfg.dropout)
    x = g.add("dense", [x], scope="head/classifier", out_features=cfg.classes, bias=False)
    g.add("output", [x])
    return g.finalize()
