"""The closed vocabulary of IR operations, each defined once (:class:`OpDef`).

:data:`OPS` maps every op type to its definition: attributes, shape inference, cost,
zero-semantics and its lowerings to flax, ONNX, standalone code, predictor features and
diagrams. The definitions live by family: :mod:`nas.ops.core` (borders, routing, merges),
:mod:`nas.ops.pointwise` (activations, dense, batch norm), :mod:`nas.ops.spatial`
(convolutions, shuffles, padding), :mod:`nas.ops.pooling`, :mod:`nas.ops.sequence`
(embeddings, tokens) and :mod:`nas.ops.attention` (norms, attention, tied output).
"""

from __future__ import annotations

from nas.ops.attention import ATTENTION_OPS
from nas.ops.base import REQUIRED, Code, Node, OpDef, Shape, channel_axis, padding, pair
from nas.ops.core import CORE_OPS
from nas.ops.pointwise import POINTWISE_OPS
from nas.ops.pooling import POOLING_OPS
from nas.ops.sequence import SEQUENCE_OPS
from nas.ops.spatial import SPATIAL_OPS

OPS: dict[str, OpDef] = {
    op.name: op
    for op in (
        *CORE_OPS,
        *POINTWISE_OPS,
        *SPATIAL_OPS,
        *POOLING_OPS,
        *SEQUENCE_OPS,
        *ATTENTION_OPS,
    )
}
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
