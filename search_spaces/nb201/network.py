"""The NAS-Bench-201 macro skeleton as an IR graph.

Stem (3x3 conv + BN), three stages of ``N`` cells with ``C``, ``2C``, ``4C`` channels, joined
by residual reduction blocks (ReLUConvBN 3x3 stride 2, ReLUConvBN 3x3, and a shortcut of 2x2
average pooling + 1x1 conv), then BN + ReLU, global average pooling and a linear classifier.
The benchmark counts FLOPs as conv and linear multiply-accumulates including the linear
layer's bias; pooling, BN and activations are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from nas.search_spaces.nb201.ops import edge_op, relu_conv_bn

from nas.graph import ArchGraph, CostConvention

NB201_CONVENTION = CostConvention(conv_bias=True, dense_bias=True)

# (input shape, classes) per dataset.
DATASETS: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "ImageNet16-120": ((16, 16, 3), 120),
    "digits": ((8, 8, 1), 10),
}

# Cell edges in NB201 string order: (to_node, from_node).
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def cell(g: ArchGraph, x: int, ops: Sequence[str], channels: int, scope: str) -> int:
    nodes = [x]
    for to in (1, 2, 3):
        terms = [
            edge_op(g, ops[e], nodes[frm], channels, f"{scope}/e{frm}{to}")
            for e, (t, frm) in enumerate(EDGES)
            if t == to
        ]
        nodes.append(g.add("add", terms, scope=f"{scope}/n{to}"))
    return nodes[3]


def reduction_block(g: ArchGraph, x: int, c_out: int, scope: str) -> int:
    a = relu_conv_bn(g, x, c_out, 3, 2, 1, f"{scope}/conv_a")
    b = relu_conv_bn(g, a, c_out, 3, 1, 1, f"{scope}/conv_b")
    s = g.add("avg_pool", [x], scope=f"{scope}/down", kernel=2, stride=2, padding=0)
    s = g.add("conv", [s], scope=f"{scope}/down", out_channels=c_out, kernel=1)
    return g.add("add", [s, b], scope=scope)


def build(
    ops: Sequence[str],
    input_shape: Sequence[int],
    num_classes: int,
    channels: int = 16,
    cells_per_stage: int = 5,
    graph: ArchGraph | None = None,
) -> ArchGraph:
    """The NB201 network for a cell given as its six edge ops (built into ``graph``, an empty
    graph with :data:`NB201_CONVENTION`, when given)."""
    g = ArchGraph(convention=NB201_CONVENTION) if graph is None else graph
    x = g.add("input", shape=list(input_shape))
    x = g.add("conv", [x], scope="stem", out_channels=channels, kernel=3, padding=1)
    x = g.add("batch_norm", [x], scope="stem")
    c = channels
    for stage in range(3):
        if stage > 0:
            c *= 2
            x = reduction_block(g, x, c, f"reduce{stage}")
        for i in range(cells_per_stage):
            x = cell(g, x, ops, c, f"stage{stage}/cell{i}")
    x = g.add("batch_norm", [x], scope="lastact")
    x = g.add("relu", [x], scope="lastact")
    x = g.add("global_pool", [x], scope="head")
    x = g.add("dense", [x], scope="head", out_features=num_classes)
    g.add("output", [x])
    return g.finalize()
