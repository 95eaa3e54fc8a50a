"""The closed vocabulary of IR operations, each defined once (:class:`OpDef`).

:data:`OPS` maps every op type to its definition: attributes, shape inference, cost,
zero-semantics and its lowerings to flax, ONNX, standalone code, predictor features and
diagrams. The definitions live by family: :mod:`nas.ops.core` (any shape),
:mod:`nas.ops.spatial` (feature maps), :mod:`nas.ops.sequence` (token sequences).
"""

from __future__ import annotations

from nas.ops.base import REQUIRED, Code, Node, OpDef, Shape, channel_axis, padding, pair
from nas.ops.core import CORE_OPS
from nas.ops.sequence import SEQUENCE_OPS
from nas.ops.spatial import SPATIAL_OPS

OPS: dict[str, OpDef] = {op.name: op for op in (*CORE_OPS, *SPATIAL_OPS, *SEQUENCE_OPS)}
"""Every op type of the IR by name."""

PARAMETRIC_OPS = frozenset(name for name, op in OPS.items() if op.parametric)
"""The op types that own trainable arrays."""

__all__ = [
    "OPS",
    "PARAMETRIC_OPS",
    "REQUIRED",
    "Code",
    "Node",
    "OpDef",
    "Shape",
    "channel_axis",
    "padding",
    "pair",
]
