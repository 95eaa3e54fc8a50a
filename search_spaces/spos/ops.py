"""Single Path One-Shot's choice blocks (ShuffleNetV2 units), written as IR nodes.

Every block maps ``inp`` input channels to ``oup`` output channels. A block that opens a
stage (the downsampling block) feeds its whole input to two branches, a projection branch
(depthwise conv + BN, 1x1 conv + BN + ReLU, keeping ``inp`` channels) and the main branch
(producing ``oup - inp`` channels), and concatenates ``[projection, main]``. Every other
block splits its input into two halves: one passes through unchanged, the main branch
transforms the other, and the result is ``[passed half, main]``.

The split follows the Megvii code exactly: channels are *de-interleaved*, the even channels
``0, 2, 4, ...`` pass through and the odd channels ``1, 3, 5, ...`` enter the main branch.
(SPOS folds ShuffleNetV2's ``channel_shuffle(groups=2)`` + split into this one step.) In the
IR, ``channel_shuffle(groups=g)`` is PyTorch's NCHW ``view(B, g, C/g, H, W).transpose(1, 2)``,
i.e. output channel ``i*g + j`` is input channel ``j*(C/g) + i``. With ``g = C/2`` the output
is ``[0, 2, 4, ..., 1, 3, 5, ...]``, so the SPOS split is ``channel_shuffle(groups=C/2)``
followed by two contiguous ``split`` slices. (``groups=2`` would interleave the halves, the
inverse permutation, and is not what SPOS computes.)
"""

from __future__ import annotations

from nas.graph import ArchGraph

BLOCKS = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception")
"""Choice-block names in SPOS order (index = option id)."""

KERNELS = {"shuffle3x3": 3, "shuffle5x5": 5, "shuffle7x7": 7}


def conv_bn(
    g: ArchGraph,
    x: int,
    c_out: int,
    kernel: int,
    stride: int,
    scope: str,
    *,
    depthwise: bool = False,
    relu: bool = False,
) -> int:
    """Conv (no bias, ``kernel // 2`` padding) -> BatchNorm (affine) [-> ReLU]."""
    attrs = {"out_channels": c_out, "kernel": kernel, "stride": stride, "padding": kernel // 2}
    if depthwise:
        attrs["groups"] = c_out
    x = g.add("conv", [x], scope=scope, **attrs)
    x = g.add("batch_norm", [x], scope=scope)
    if relu:
        x = g.add("relu", [x], scope=scope)
    return x


def spos_split(g: ArchGraph, x: int, channels: int, scope: str) -> tuple[int, int]:
    """SPOS's channel split: (even channels, odd channels) of a ``channels``-wide map."""
    half = channels // 2
    s = g.add("channel_shuffle", [x], scope=f"{scope}/split", groups=half)
    keep = g.add("split", [s], scope=f"{scope}/split", start=0, size=half)
    main = g.add("split", [s], scope=f"{scope}/split", start=half, size=half)
    return keep, main


def _main_branch(
    g: ArchGraph, x: int, block: str, inp: int, mid: int, outputs: int, stride: int, scope: str
) -> int:
    if block in KERNELS:
        k = KERNELS[block]
        x = conv_bn(g, x, mid, 1, 1, f"{scope}/pw", relu=True)
        x = conv_bn(g, x, mid, k, stride, f"{scope}/dw", depthwise=True)
        return conv_bn(g, x, outputs, 1, 1, f"{scope}/pwl", relu=True)
    if block == "xception":
        x = conv_bn(g, x, inp, 3, stride, f"{scope}/dw1", depthwise=True)
        x = conv_bn(g, x, mid, 1, 1, f"{scope}/pw1", relu=True)
        x = conv_bn(g, x, mid, 3, 1, f"{scope}/dw2", depthwise=True)
        x = conv_bn(g, x, mid, 1, 1, f"{scope}/pw2", relu=True)
        x = conv_bn(g, x, mid, 3, 1, f"{scope}/dw3", depthwise=True)
        return conv_bn(g, x, outputs, 1, 1, f"{scope}/pw3", relu=True)
    raise AssertionError(block)  # genotypes are validated on construction


def choice_block(
    g: ArchGraph,
    x: int,
    block: str,
    in_channels: int,
    out_channels: int,
    mid_channels: int,
    stride: int,
    first: bool,
    scope: str,
) -> int:
    """One SPOS choice block on ``x`` (``in_channels`` wide); returns its output node.

    Args:
        block: one of :data:`BLOCKS`.
        in_channels: channels of ``x`` (the whole map, also for a non-first block).
        out_channels: channels of the block's output.
        mid_channels: width of the main branch's hidden layers (searched by channel search).
        stride: spatial stride of the block (only a stage's first block may downsample).
        first: the stage's first block (two branches over the whole input) or a later one
            (channel split, one half passes through).
    """
    if first:
        inp = in_channels
        k = KERNELS.get(block, 3)
        p = conv_bn(g, x, inp, k, stride, f"{scope}/proj/dw", depthwise=True)
        p = conv_bn(g, p, inp, 1, 1, f"{scope}/proj/pw", relu=True)
        m = _main_branch(g, x, block, inp, mid_channels, out_channels - inp, stride, scope)
        return g.add("concat", [p, m], scope=scope)
    if stride != 1:
        raise AssertionError("only a stage's first block may downsample")
    inp = in_channels // 2
    keep, m = spos_split(g, x, in_channels, scope)
    m = _main_branch(g, m, block, inp, mid_channels, out_channels - inp, 1, scope)
    return g.add("concat", [keep, m], scope=scope)
