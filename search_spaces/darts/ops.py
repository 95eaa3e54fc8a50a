"""The DARTS operations written as IR nodes, one function per module of the DARTS code.

Every function takes the graph, the input node, the channel count ``C`` (input = output
channels, as in DARTS), the stride and the BatchNorm ``affine`` flag, and returns the output
node. The definitions follow ``cnn/operations.py`` of the DARTS code:

- ``sep_conv_kxk``: (ReLU, depthwise kxk with the stride, pointwise 1x1, BN) twice; the
  second depthwise has stride 1.
- ``dil_conv_kxk``: ReLU, depthwise kxk dilation 2 with the stride, pointwise 1x1, BN.
- ``skip_connect``: identity at stride 1, :func:`factorized_reduce` at stride 2.
- ``max_pool_3x3`` / ``avg_pool_3x3``: 3x3 pooling, padding 1 (average excluding padding).
  The search network (the supernet's mixed op) follows each pool with a non-affine BN;
  the evaluation network does not (``pool_bn``).
- ``none``: zeros (strided at stride 2).
"""

from __future__ import annotations

from nas.search_spaces.darts.genotypes import PRIMITIVES

from nas.graph import ArchGraph


def relu_conv_bn(
    g: ArchGraph,
    x: int,
    c_out: int,
    kernel: int,
    stride: int,
    padding: int,
    scope: str,
    affine: bool = True,
) -> int:
    """``ReLUConvBN``: ReLU, conv without bias, BatchNorm."""
    x = g.add("relu", [x], scope=scope)
    x = g.add(
        "conv", [x], scope=scope, out_channels=c_out, kernel=kernel, stride=stride, padding=padding
    )
    return g.add("batch_norm", [x], scope=scope, affine=affine)


def factorized_reduce(g: ArchGraph, x: int, c_out: int, scope: str, affine: bool = True) -> int:
    """``FactorizedReduce``: ReLU, two 1x1 stride-2 convs (the second on the input shifted
    by one pixel, ``x[:, :, 1:, 1:]``), concatenated, BatchNorm. Halves the resolution."""
    if c_out % 2:
        raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
    x = g.add("relu", [x], scope=scope)
    a = g.add("conv", [x], scope=f"{scope}/conv_1", out_channels=c_out // 2, kernel=1, stride=2)
    shifted = g.add("crop", [x], scope=f"{scope}/shift", top=1, left=1)
    b = g.add(
        "conv", [shifted], scope=f"{scope}/conv_2", out_channels=c_out // 2, kernel=1, stride=2
    )
    y = g.add("concat", [a, b], scope=scope)
    return g.add("batch_norm", [y], scope=scope, affine=affine)


def sep_conv(
    g: ArchGraph, x: int, c: int, kernel: int, stride: int, scope: str, affine: bool = True
) -> int:
    """``SepConv(C, C, k, stride, k // 2)``."""
    pad = kernel // 2
    for i, s in enumerate((stride, 1)):
        sc = f"{scope}/{i}"
        x = g.add("relu", [x], scope=sc)
        x = g.add(
            "conv", [x], scope=sc, out_channels=c, kernel=kernel, stride=s, padding=pad, groups=c
        )
        x = g.add("conv", [x], scope=sc, out_channels=c, kernel=1)
        x = g.add("batch_norm", [x], scope=sc, affine=affine)
    return x


def dil_conv(
    g: ArchGraph, x: int, c: int, kernel: int, stride: int, scope: str, affine: bool = True
) -> int:
    """``DilConv(C, C, k, stride, k - 1, dilation=2)``."""
    x = g.add("relu", [x], scope=scope)
    x = g.add(
        "conv",
        [x],
        scope=scope,
        out_channels=c,
        kernel=kernel,
        stride=stride,
        padding=kernel - 1,
        dilation=2,
        groups=c,
    )
    x = g.add("conv", [x], scope=scope, out_channels=c, kernel=1)
    return g.add("batch_norm", [x], scope=scope, affine=affine)


def edge_op(
    g: ArchGraph,
    op: str,
    x: int,
    c: int,
    stride: int,
    scope: str,
    affine: bool = True,
    pool_bn: bool = False,
) -> int:
    """One DARTS operation on ``x`` (``c`` channels in and out).

    Args:
        affine: whether the op's BatchNorms learn scale and offset (True in the DARTS
            evaluation network, False in the search network and in NASLib's NB301 network).
        pool_bn: follow pooling by a non-affine BatchNorm (the search network's convention).
    """
    if op == "none":
        return g.add("zero", [x], scope=scope, stride=stride)
    if op == "skip_connect":
        if stride == 1:
            return g.add("identity", [x], scope=scope)
        return factorized_reduce(g, x, c, scope, affine)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        if op == "max_pool_3x3":
            y = g.add("max_pool", [x], scope=scope, kernel=3, stride=stride, padding=1)
        else:
            y = g.add(
                "avg_pool",
                [x],
                scope=scope,
                kernel=3,
                stride=stride,
                padding=1,
                count_include_pad=False,
            )
        if pool_bn:
            y = g.add("batch_norm", [y], scope=scope, affine=False)
        return y
    if op.startswith("sep_conv_"):
        return sep_conv(g, x, c, int(op[-1]), stride, scope, affine)
    if op.startswith("dil_conv_"):
        return dil_conv(g, x, c, int(op[-1]), stride, scope, affine)
    raise ValueError(f"unknown DARTS op {op!r}; expected one of {list(PRIMITIVES)}")
