"""The NAS-Bench-101 network as an IR graph.

Follows ``nasbench/lib/model_builder.py``: a stem (3x3 conv + BN + ReLU, 128 channels), three
stacks of three cells, a 2x2 stride-2 max-pool ('same' padding) before the second and third
stacks where the channel count doubles (128/256/512), global average pooling and a dense layer
(with bias) to the classes.

Inside a cell (the pruned spec), vertex ``t`` sums its inputs: outputs of earlier inner
vertices, sliced to its channel count where they carry one channel more, and a 1x1
conv-BN-ReLU projection of the cell input where the input feeds it. The output vertex
concatenates the inner vertices that feed it and adds a projection of the cell input when the
input feeds it directly; a cell whose only edge is input -> output is that projection alone.
Channel counts per vertex follow :func:`compute_vertex_channels`.

NAS-Bench-101 publishes no FLOPs. The graph's :class:`~nas.graph.CostConvention` is the
platform's default (conv and dense multiply-accumulates, no bias terms);
:func:`naslib_flops` reproduces the ``flops`` field of NASLib's zero-cost data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from nas.search_spaces.nb101.ops import conv_bn_relu, vertex_op

from nas.errors import GraphError
from nas.graph import ArchGraph, CostConvention

NB101_CONVENTION = CostConvention(conv_bias=False, dense_bias=False)

Matrix = Sequence[Sequence[int]]


@dataclass(frozen=True)
class NetConfig:
    """The macro skeleton for one dataset."""

    input_shape: tuple[int, int, int]
    num_classes: int
    stem_channels: int
    cells_per_stack: int
    num_stacks: int = 3


DATASETS: dict[str, NetConfig] = {
    # The benchmark's network (config.py defaults).
    "cifar10": NetConfig((32, 32, 3), 10, stem_channels=128, cells_per_stack=3),
    # A small network for quick training: 8x8x1 digits, 16/32/64 channels, one cell per stack.
    "digits": NetConfig((8, 8, 1), 10, stem_channels=16, cells_per_stack=1),
}


def compute_vertex_channels(in_channels: int, out_channels: int, matrix: Matrix) -> list[int]:
    """Output channels of every vertex of a pruned cell.

    The output's channels are split evenly among the vertices feeding it (the first
    ``out_channels % fan_in`` of them get one more); every other inner vertex takes the
    maximum of the vertices it feeds, going backwards. The input keeps ``in_channels``.
    """
    n = len(matrix)
    vc = [0] * n
    vc[0] = in_channels
    vc[n - 1] = out_channels
    if n == 2:
        return vc
    fan_in = sum(matrix[v][n - 1] for v in range(1, n))
    interior, correction = divmod(out_channels, fan_in)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            vc[v] = interior
            if correction:
                vc[v] += 1
                correction -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v][dst]:
                    vc[v] = max(vc[v], vc[dst])
    for v in range(1, n - 1):
        if vc[v] <= 0:
            raise GraphError(f"nb101: vertex {v} gets {vc[v]} channels; is the cell pruned?")
    return vc


def _truncate(g: ArchGraph, x: int, have: int, want: int, scope: str) -> int:
    """The first ``want`` channels of ``x`` (NB101 only ever drops one)."""
    if have == want:
        return x
    if have != want + 1:
        raise GraphError(f"nb101: cannot truncate {have} channels to {want} at {scope}")
    return g.add("split", [x], scope=f"{scope}/truncate", start=0, size=want)


def cell(
    g: ArchGraph,
    x: int,
    matrix: Matrix,
    ops: Sequence[str],
    in_channels: int,
    out_channels: int,
    scope: str,
) -> int:
    """One NB101 cell (module) for a *pruned* spec; returns the output node."""
    n = len(matrix)
    out = n - 1
    vc = compute_vertex_channels(in_channels, out_channels, matrix)
    tensors = [x]
    concat_in: list[int] = []
    for t in range(1, out):
        vs = f"{scope}/vertex{t}"
        terms = [
            _truncate(g, tensors[src], vc[src], vc[t], f"{vs}/from{src}")
            for src in range(1, t)
            if matrix[src][t]
        ]
        if matrix[0][t]:
            terms.append(conv_bn_relu(g, x, vc[t], 1, f"{vs}/projection"))
        h = terms[0] if len(terms) == 1 else g.add("add", terms, scope=vs)
        tensors.append(vertex_op(g, ops[t], h, vc[t], vs))
        if matrix[t][out]:
            concat_in.append(tensors[t])
    if not concat_in:
        return conv_bn_relu(g, x, out_channels, 1, f"{scope}/output/projection")
    y = concat_in[0] if len(concat_in) == 1 else g.add("concat", concat_in, scope=f"{scope}/output")
    if matrix[0][out]:
        p = conv_bn_relu(g, x, out_channels, 1, f"{scope}/output/projection")
        y = g.add("add", [y, p], scope=f"{scope}/output")
    return y


def _same_pool_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) of one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build(matrix: Matrix, ops: Sequence[str], config: NetConfig) -> ArchGraph:
    """The NB101 network for a pruned cell spec."""
    g = ArchGraph(convention=NB101_CONVENTION)
    x = g.add("input", shape=list(config.input_shape))
    x = conv_bn_relu(g, x, config.stem_channels, 3, "stem")
    channels = config.stem_channels
    h, w = config.input_shape[:2]
    for stack in range(config.num_stacks):
        in_channels = channels
        if stack > 0:
            top, bottom = _same_pool_padding(h, 2, 2)
            left, right = _same_pool_padding(w, 2, 2)
            x = g.add(
                "max_pool",
                [x],
                scope=f"stack{stack}/downsample",
                kernel=2,
                stride=2,
                padding=[top, bottom, left, right],
            )
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            channels *= 2
        for m in range(config.cells_per_stack):
            x = cell(g, x, matrix, ops, in_channels, channels, f"stack{stack}/module{m}")
            in_channels = channels
    x = g.add("global_pool", [x], scope="head")
    x = g.add("dense", [x], scope="head", out_features=config.num_classes)
    g.add("output", [x])
    return g.finalize()


def naslib_flops(g: ArchGraph) -> int:
    """FLOPs as in NASLib's zero-cost data (tensorwatch ``ModelStats.Flops`` of the PyTorch
    NB101 model NASLib uses): conv multiply-accumulates (plus one per output for a bias), two
    per element for an affine BatchNorm (one otherwise), one per input element for a ReLU,
    ``kernel_h * kernel_w`` per output element for a pooling layer, the dense layer's weight
    multiply-accumulates (no bias); sums, concatenations, channel slices and the global
    average pool (a plain mean there) are free. Matches all 500 cells of the file.
    """
    total = 0
    for n in g.g:
        op = g.op(n)
        out = math.prod(g.shape(n))
        inp = math.prod(g.shape(g.inputs(n)[0])) if op != "input" else 0
        if op == "conv":
            a = g.attrs(n)
            kh, kw = (a["kernel"], a["kernel"]) if isinstance(a["kernel"], int) else a["kernel"]
            cin = g.shape(g.inputs(n)[0])[-1] // a["groups"]
            total += out * kh * kw * cin + (out if a["bias"] else 0)
        elif op == "dense":
            total += inp * g.shape(n)[-1]
        elif op == "batch_norm":
            total += (2 if g.attrs(n)["affine"] else 1) * out
        elif op == "relu":
            total += inp
        elif op in ("max_pool", "avg_pool"):
            a = g.attrs(n)
            kh, kw = (a["kernel"], a["kernel"]) if isinstance(a["kernel"], int) else a["kernel"]
            total += kh * kw * out
    return total
