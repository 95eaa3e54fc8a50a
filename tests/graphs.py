"""Graphs shared by several test modules."""

from __future__ import annotations

from nas.graph import ArchGraph


def every_op_graph(classes: int = 5) -> ArchGraph:
    """One finalized graph that uses every op of the IR vocabulary (and a few variants:
    dilated grouped conv, asymmetric padding, dense over a map, max global pool)."""
    g = ArchGraph()
    x = g.add("input", shape=[8, 8, 4])
    y = g.add("conv", [x], out_channels=8, kernel=3, padding=1, dilation=1, bias=True)
    y = g.add("batch_norm", [y], affine=False)
    acts = [
        g.add(a, [y])
        for a in ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "tanh", "gelu")
    ]
    y = g.add("add", acts)
    y = g.add("channel_shuffle", [y], groups=2)
    lo = g.add("split", [y], start=0, size=4)
    hi = g.add("split", [y], start=4, size=4)
    se = g.add("global_pool", [hi], keepdims=True)
    se = g.add("conv", [se], out_channels=4, kernel=1, bias=True)
    hi = g.add("mul", [hi, se])
    y = g.add("concat", [lo, hi])
    y = g.add("batch_norm", [y])
    y = g.add("max_pool", [y], kernel=3, stride=2, padding=1)
    y = g.add("avg_pool", [y], kernel=3, stride=1, padding=1, count_include_pad=False)
    y = g.add("conv", [y], out_channels=8, kernel=3, padding=[0, 2, 1, 1], dilation=2, groups=4)
    z = g.add("zero", [y], stride=2, out_channels=8)
    y = g.add("conv", [y], out_channels=8, kernel=1, stride=2)
    y = g.add("add", [y, z])
    y = g.add("pad", [y], top=1, left=1)
    y = g.add("crop", [y], bottom=1, right=1)
    y = g.add("avg_pool", [y], kernel=2, stride=1, padding=1)
    y = g.add("dense", [y], out_features=6)  # a dense layer over a map's channels
    y = g.add("global_pool", [y], mode="max", keepdims=True)
    y = g.add("dropout", [g.add("flatten", [g.add("identity", [y])])], rate=0.1)
    y = g.add("dense", [y], out_features=classes)
    g.add("output", [g.add("add", [y, g.add("zero", [y])])])
    return g.finalize()
