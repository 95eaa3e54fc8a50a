"""NAS-Bench-Macro's candidate blocks, written as IR nodes.

Following the benchmark's code (xiusu/NAS-Bench-Macro, ``train/model.py``):

- ``0`` identity: nothing at a stride-1 layer with equal widths; where the layer downsamples
  (or changes width) a 1x1 conv with the layer's stride + BN.
- ``1`` MobileNetV2 inverted residual, expansion 3, kernel 3.
- ``2`` MobileNetV2 inverted residual, expansion 6, kernel 5.

An inverted residual is 1x1 conv to ``round(inp * t)`` + BN + ReLU, depthwise ``k x k`` conv
(stride, ``k // 2`` padding) + BN + ReLU, 1x1 conv + BN, plus the input when the stride is 1
and the widths agree. Convs have no bias.
"""

from __future__ import annotations

from nas.graph import ArchGraph

OPS = ("identity", "mb3_k3", "mb6_k5")
"""Candidate names in the benchmark's order (index = the digit of the 8-character code)."""

MBCONV = {"mb3_k3": (3, 3), "mb6_k5": (6, 5)}
"""(expansion ratio, kernel size) of each inverted-residual candidate."""


def conv_bn(
    g: ArchGraph,
    x: int,
    c_out: int,
    kernel: int,
    stride: int,
    scope: str,
    *,
    groups: int = 1,
    relu: bool = False,
) -> int:
    """Conv (no bias, ``kernel // 2`` padding) -> BatchNorm (affine) [-> ReLU]."""
    x = g.add(
        "conv",
        [x],
        scope=scope,
        out_channels=c_out,
        kernel=kernel,
        stride=stride,
        padding=kernel // 2,
        groups=groups,
    )
    x = g.add("batch_norm", [x], scope=scope)
    if relu:
        x = g.add("relu", [x], scope=scope)
    return x


def inverted_residual(
    g: ArchGraph, x: int, inp: int, oup: int, stride: int, t: int, k: int, scope: str
) -> int:
    """MobileNetV2 block (``t > 1``): expand, depthwise, project, residual when shapes agree."""
    hidden = round(inp * t)
    y = conv_bn(g, x, hidden, 1, 1, f"{scope}/pw", relu=True)
    y = conv_bn(g, y, hidden, k, stride, f"{scope}/dw", groups=hidden, relu=True)
    y = conv_bn(g, y, oup, 1, 1, f"{scope}/pwl")
    if stride == 1 and inp == oup:
        y = g.add("add", [y, x], scope=scope)
    return y


def layer_op(g: ArchGraph, op: str, x: int, inp: int, oup: int, stride: int, scope: str) -> int:
    """One searchable layer with candidate ``op``."""
    if op == "identity":
        if stride != 1 or inp != oup:
            return conv_bn(g, x, oup, 1, stride, f"{scope}/downsample")
        return g.add("identity", [x], scope=scope)
    if op in MBCONV:
        t, k = MBCONV[op]
        return inverted_residual(g, x, inp, oup, stride, t, k, scope)
    raise AssertionError(op)  # genotypes are validated on construction
