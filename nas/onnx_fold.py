"""Constant folding and shape inference for ONNX graphs read into the IR.

Exporters compute reshape targets and slice bounds from tensor shapes at run time
(``Shape`` -> ``Gather`` -> ``Concat`` -> ``Reshape``), which leaves ONNX's own shape
inference blind downstream. :func:`fold_constants` evaluates every node whose inputs are
known until nothing changes and returns the shapes of what remains
(:mod:`nas.onnx_import` reads the result).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nas.errors import GraphError


def infer_shapes(onnx_mod, model) -> dict[str, tuple]:
    """Every tensor's shape by ONNX shape inference (``None`` for an unknown dimension)."""
    try:
        g = onnx_mod.shape_inference.infer_shapes(model).graph
    except Exception as e:
        raise GraphError(f"ONNX shape inference failed: {str(e).splitlines()[0][:200]}") from None
    shapes = {}
    for vi in [*g.value_info, *g.input, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return shapes


def fold_constants(onnx_mod, model, rounds: int = 8):
    """``(model, constants, shapes)`` after evaluating every node whose inputs are constants
    (``Constant``, ``Shape`` of a tensor of known shape, and the arithmetic of
    :data:`_FOLD`), until nothing changes: exporters compute reshape targets and slice bounds
    from shapes at run time, which leaves ONNX's shape inference blind downstream."""
    from onnx import numpy_helper

    work = onnx_mod.ModelProto()
    work.CopyFrom(model)
    consts = {t.name: tensor_value(onnx_mod, t) for t in work.graph.initializer}
    for _ in range(rounds):
        shapes = infer_shapes(onnx_mod, work)
        kept, changed = [], False
        for nd in work.graph.node:
            value = _evaluate(onnx_mod, nd, consts, shapes)
            if value is None:
                kept.append(nd)
                continue
            consts[nd.output[0]] = value
            work.graph.initializer.append(numpy_helper.from_array(value, nd.output[0]))
            changed = True
        if not changed:
            return work, consts, shapes
        del work.graph.node[:]
        work.graph.node.extend(kept)
    return work, consts, infer_shapes(onnx_mod, work)


def _evaluate(onnx_mod, nd, consts: dict, shapes: dict) -> np.ndarray | None:
    """The value of a node computable now, else ``None``."""
    if nd.op_type == "Constant":
        a = nd.attribute[0]
        if a.name != "value":
            return np.asarray(onnx_mod.helper.get_attribute_value(a))
        return tensor_value(onnx_mod, a.t)
    if nd.op_type == "Shape":
        s = shapes.get(nd.input[0])
        if not s or any(d is None for d in s[1:]):
            return None
        return np.array([d or 1 for d in s], np.int64)  # a symbolic batch counts as 1
    folded = _FOLD.get(nd.op_type)
    if folded is None or not nd.input or not all(x in consts for x in nd.input if x):
        return None
    try:
        return np.asarray(folded([consts.get(x) for x in nd.input], attrs(onnx_mod, nd)))
    except (ValueError, IndexError, TypeError):
        return None


def attrs(onnx_mod, nd) -> dict[str, Any]:
    return {a.name: onnx_mod.helper.get_attribute_value(a) for a in nd.attribute}


def tensor_value(onnx_mod, t) -> np.ndarray:
    """A tensor's value; one whose data is elsewhere (an absent external file) is zeros of
    its shape: only shapes matter here."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(t)
    except Exception:  # external data not loaded
        dtype = onnx_mod.helper.tensor_dtype_to_np_dtype(t.data_type)
        return np.zeros(tuple(t.dims), dtype)


_FOLD = {
    "Gather": lambda a, at: np.take(a[0], a[1].astype(np.int64), axis=int(at.get("axis", 0))),
    "Unsqueeze": lambda a, at: np.expand_dims(
        a[0], tuple(int(x) for x in (at.get("axes") if "axes" in at else a[1]))
    ),
    "Squeeze": lambda a, at: np.squeeze(a[0]) if len(a) < 2 else np.squeeze(a[0], tuple(a[1])),
    "Concat": lambda a, at: np.concatenate(a, axis=int(at["axis"])),
    "Cast": lambda a, at: a[0],
    "Mul": lambda a, at: a[0] * a[1],
    "Div": lambda a, at: a[0] // a[1] if a[0].dtype.kind == "i" else a[0] / a[1],
    "Add": lambda a, at: a[0] + a[1],
    "Sub": lambda a, at: a[0] - a[1],
    "Slice": lambda a, at: a[0][int(a[1][0]) : int(a[2][0])],
    "Identity": lambda a, at: a[0],
    "Reshape": lambda a, at: a[0].reshape(a[1].astype(np.int64)),
}
"""Operators evaluated when all their inputs are constants (shape arithmetic)."""
