"""NAS-Bench-201 cell operations, written as IR nodes."""

from __future__ import annotations

from nas.graph import ArchGraph

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""Operation names in NAS-Bench-201's order (index = option id)."""


def relu_conv_bn(
    g: ArchGraph, x: int, c_out: int, kernel: int, stride: int, padding: int, scope: str
) -> int:
    """ReLU -> Conv (no bias) -> BatchNorm (affine), NAS-Bench-201's ``ReLUConvBN``."""
    x = g.add("relu", [x], scope=scope)
    x = g.add(
        "conv",
        [x],
        scope=scope,
        out_channels=c_out,
        kernel=kernel,
        stride=stride,
        padding=padding,
    )
    return g.add("batch_norm", [x], scope=scope)


def edge_op(g: ArchGraph, op: str, x: int, channels: int, scope: str) -> int:
    """One stride-1 cell edge with equal input and output channels."""
    if op == "none":
        return g.add("zero", [x], scope=scope)
    if op == "skip_connect":
        return g.add("identity", [x], scope=scope)
    if op == "nor_conv_1x1":
        return relu_conv_bn(g, x, channels, 1, 1, 0, scope)
    if op == "nor_conv_3x3":
        return relu_conv_bn(g, x, channels, 3, 1, 1, scope)
    if op == "avg_pool_3x3":
        return g.add(
            "avg_pool", [x], scope=scope, kernel=3, stride=1, padding=1, count_include_pad=False
        )
    raise AssertionError(op)  # genotypes are validated on construction
