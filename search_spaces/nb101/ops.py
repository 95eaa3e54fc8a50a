"""NAS-Bench-101 vertex operations, written as IR nodes.

The TensorFlow original (``nasbench/lib/base_ops.py``) builds every convolution as
``conv2d(use_bias=False, padding='same')`` followed by ``batch_normalization`` with its
defaults (``center=True, scale=True``: a trainable beta and gamma per channel) and a ReLU.
The 1x1 projections of the cell input use the same block.
"""

from __future__ import annotations

from nas.graph import ArchGraph

INPUT = "input"
OUTPUT = "output"
CONV3X3 = "conv3x3-bn-relu"
CONV1X1 = "conv1x1-bn-relu"
MAXPOOL3X3 = "maxpool3x3"

OPS = (CONV3X3, CONV1X1, MAXPOOL3X3)
"""The operations of the five inner vertices, in NAS-Bench-101's ``available_ops`` order
(the order its graph hash uses)."""

NASLIB_OPS = (INPUT, OUTPUT, MAXPOOL3X3, CONV1X1, CONV3X3)
"""Op ids of NASLib's NB101 keys (``convert_spec_to_tuple``)."""


def conv_bn_relu(g: ArchGraph, x: int, c_out: int, kernel: int, scope: str) -> int:
    """Conv (no bias, 'same' padding, stride 1) -> BatchNorm (affine) -> ReLU."""
    x = g.add(
        "conv",
        [x],
        scope=scope,
        out_channels=c_out,
        kernel=kernel,
        padding=(kernel - 1) // 2,
    )
    x = g.add("batch_norm", [x], scope=scope, eps=1e-5, momentum=0.003)
    return g.add("relu", [x], scope=scope)


def vertex_op(g: ArchGraph, op: str, x: int, channels: int, scope: str) -> int:
    """One inner vertex; ``channels`` is ignored by the max-pool (it keeps its input's)."""
    if op == CONV3X3:
        return conv_bn_relu(g, x, channels, 3, f"{scope}/conv3x3")
    if op == CONV1X1:
        return conv_bn_relu(g, x, channels, 1, f"{scope}/conv1x1")
    if op == MAXPOOL3X3:
        return g.add("max_pool", [x], scope=f"{scope}/maxpool3x3", kernel=3, stride=1, padding=1)
    raise AssertionError(op)  # genotypes are validated on construction
