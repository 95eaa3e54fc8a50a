"""ONNX graphs written as text for a sentence encoder.

Every ONNX node becomes one line: its op type, its attributes, where its inputs come from and
the shape of its output, for example ``3 Conv k3 s1 p1 in 2 out C S`` (C: the block's
input channels, S: its input resolution). A whole network written this way is far longer
than the 256 tokens all-MiniLM-L6-v2 reads (an NB201 network has about 300 ONNX nodes, a
DARTS network thousands), so :func:`describe` writes it in three parts:

* ``stats``: one line of totals (input and output shapes, parameters, multiply-accumulates,
  node count, op-type histogram);
* ``skeleton``: the sequence of top-level blocks (grouped by the IR ``scope`` carried in the
  ONNX node names) with their absolute input shapes, identical consecutive blocks written
  once with their count (``stage A x3``);
* ``blocks``: each distinct block once, its nodes numbered locally and shapes written
  relative to the block input (so that the same cell in another stage reads the same), runs
  of identical sub-blocks (cells of a stage, modules of a stack) written once with their
  count, split into chunks of at most ``max_tokens`` tokens.

Each chunk carries a weight (how many nodes of the network it stands for), used to pool the
chunk embeddings. :func:`describe_flat` writes the plain node-by-node text (absolute shapes,
global numbering) for comparison.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nas.graph import ArchGraph

PARAM_SUFFIXES = (".weight", ".bias", ".scale")
STAT_SUFFIXES = (".mean", ".var")


@dataclass(frozen=True)
class Chunk:
    """One piece of text to embed: ``kind`` is stats, skeleton, block or flat."""

    kind: str
    text: str
    weight: float = 1.0
    numbers: tuple[float, ...] = ()
    """For the stats chunk: log10 of parameters, multiply-adds and node count."""


@dataclass
class _Node:
    idx: int
    op: str
    scope: tuple[str, ...]
    inputs: list[int]  # producing node indices (-1: the graph input)
    attrs: str
    shape: tuple[int, ...]  # without batch
    in_shape: tuple[int, ...]
    params: int = 0
    macs: int = 0
    extra: dict = field(default_factory=dict)


def _fmt_int_list(v: Sequence[int]) -> str:
    v = list(v)
    return str(v[0]) if len(set(v)) == 1 else "x".join(str(x) for x in v)


def _parse(proto) -> tuple[list[_Node], tuple[int, ...], tuple[int, ...]]:
    """The ONNX nodes with producers, attributes and inferred shapes."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value for d in dims[1:])
    consts = {t.name: t for t in proto.graph.initializer}
    param_shapes = {
        vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        for vi in proto.graph.input[1:]
    }
    for name, t in consts.items():
        param_shapes.setdefault(name, tuple(t.dims))
    producer: dict[str, int] = {"input": -1}
    nodes: list[_Node] = []
    groups = _one_line_groups(proto)
    for nd in proto.graph.node:
        i = len(nodes)
        name = nd.name
        ir_op = name.rsplit("/", 1)[-1].split(":")[0]
        if ir_op == "zero":
            # The IR's zero (a strided slice times zeros) is one line: Zero.
            if nd.op_type == "Slice":
                producer[nd.output[0]] = producer.get(nd.input[0], -1)
                continue
        group = groups.get(name.rsplit(":", 1)[0])
        if group is not None:
            if nd is not group[-1]:
                producer[nd.output[0]] = _INTERNAL
                continue
            nodes.append(_group_node(i, ir_op, group, producer, shapes, param_shapes, consts))
            producer[nd.output[0]] = i
            continue
        scope_part = name.rsplit("/", 1)[0] if "/" in name else ""
        scope = tuple(s for s in scope_part.split("/") if s)
        a = {at.name: onnx.helper.get_attribute_value(at) for at in nd.attribute}
        ins = [producer[x] for x in nd.input if x in producer]
        in_shape = shapes.get(nd.input[0], ()) if nd.input else ()
        out_shape = shapes.get(nd.output[0], ())

        def const(j: int, nd=nd) -> list[int]:
            if j < len(nd.input) and nd.input[j] in consts:
                return [int(x) for x in numpy_helper.to_array(consts[nd.input[j]]).ravel()]
            return []

        op = nd.op_type
        words: list[str] = []
        params = macs = 0
        if op in ("Conv", "MaxPool", "AveragePool"):
            words.append("k" + _fmt_int_list(a["kernel_shape"]))
            s = a.get("strides", [1, 1])
            if any(x != 1 for x in s):
                words.append("s" + _fmt_int_list(s))
            p = a.get("pads", [0, 0, 0, 0])
            if any(p):
                words.append("p" + _fmt_int_list(p))
            d = a.get("dilations", [1, 1])
            if any(x != 1 for x in d):
                words.append("d" + _fmt_int_list(d))
            g = a.get("group", 1)
            if op == "Conv" and g > 1:
                words.append("dw" if in_shape and g == in_shape[0] else f"g{g}")
            if op == "AveragePool" and not a.get("count_include_pad", 0) and any(p):
                words.append("excl")
            if op == "Conv":
                w = param_shapes.get(nd.input[1], ())
                params = int(np.prod(w)) if w else 0
                if len(nd.input) > 2:
                    params += int(np.prod(param_shapes.get(nd.input[2], (0,))))
                if w and out_shape:
                    macs = int(np.prod(out_shape)) * int(np.prod(w[1:]))
        elif op == "Gemm":
            w = param_shapes.get(nd.input[1], ())
            params = int(np.prod(w)) if w else 0
            if len(nd.input) > 2:
                params += int(np.prod(param_shapes.get(nd.input[2], (0,))))
            macs = int(np.prod(w)) if w else 0
        elif op == "BatchNormalization":
            if nd.input[1].endswith(".scale"):  # affine (else constant ones and zeros)
                params = 2 * int(np.prod(param_shapes.get(nd.input[1], (0,))))
        elif op == "Clip":
            hi = const(2)
            words.append(f"max{hi[0]}" if hi else "")
        elif op == "Slice":
            starts, ends, axes = const(1), const(2), const(3)
            steps = const(4) or [1] * len(axes)
            if axes == [1]:
                words.append(f"ch {starts[0]}:{ends[0]}")
            elif any(s != 1 for s in steps):
                words.append("stride" + _fmt_int_list(steps[1:]))
            else:
                words.append("crop")
        elif op == "Pad":
            words.append("p" + _fmt_int_list(const(1)[2:4] + const(1)[6:8]))
        elif op == "Transpose":
            words.append("perm" + "".join(str(x) for x in a.get("perm", [])))
        elif op == "Reshape":
            words.append("groups" + str(const(1)[1]) if len(const(1)) == 5 else "")
        elif op in ("Gather", "MatMul", "Add", "LayerNormalization") and ir_op != "unembed":
            # Embedding look-ups, dense layers over sequences, their biases, layer norms.
            params = sum(
                int(np.prod(param_shapes[x]))
                for x in nd.input
                if x.endswith(PARAM_SUFFIXES) and x in param_shapes
            )
            if op == "Gather" and params:
                words.append("embed")
            if op == "MatMul" and out_shape and in_shape:
                macs = int(np.prod(out_shape)) * int(in_shape[-1])
        elif op == "MatMul":  # the tied output layer: its weights are the embedding's
            words.append("tied")
            if out_shape and in_shape:
                macs = int(np.prod(out_shape)) * int(in_shape[-1])
        elif op == "Transpose" and ir_op == "unembed":
            words.append("embedding")
        elif ir_op == "zero":
            op = "Zero"
            stride = in_shape[1] // out_shape[1] if len(out_shape) == 3 and out_shape[1] else 1
            if stride > 1:
                words.append(f"s{stride}")
            in_shape = shapes.get(_first_input(proto, nd), in_shape)
        nodes.append(
            _Node(
                i,
                op,
                scope,
                ins,
                " ".join(w for w in words if w),
                out_shape,
                in_shape,
                params,
                macs,
            )
        )
        producer[nd.output[0]] = i
    in_sh = shapes.get("input", ())
    out_sh = shapes.get("output", ())
    return nodes, in_sh, out_sh


_INTERNAL = -2
_ONE_LINE = {
    "attention": "Attention",
    "rms_norm": "RMSNorm",
    "cls_token": "ClassToken",
    "pos_embed": "PositionEmbedding",
    "segment_embed": "SegmentEmbedding",
    "tokens": "Tokens",
}
"""IR ops whose several ONNX nodes read as one line (the name it gets)."""


def _one_line_groups(proto) -> dict[str, list]:
    """ONNX nodes of one IR node of :data:`_ONE_LINE`, by the IR node's name prefix."""
    out: dict[str, list] = {}
    for nd in proto.graph.node:
        ir_op = nd.name.rsplit("/", 1)[-1].split(":")[0]
        if ir_op in _ONE_LINE:
            out.setdefault(nd.name.rsplit(":", 1)[0], []).append(nd)
    return out


def _group_node(i, ir_op, group, producer, shapes, param_shapes, consts) -> _Node:
    """One line for an IR node that ONNX writes as several nodes (attention, RMS norm...)."""
    from onnx import numpy_helper

    ext: list[str] = []
    params = 0
    for nd in group:
        for x in nd.input:
            if x.endswith(PARAM_SUFFIXES) and x in param_shapes:
                params += int(np.prod(param_shapes[x]))
            elif producer.get(x, _INTERNAL) != _INTERNAL and x not in ext:
                ext.append(x)
    out_shape = shapes.get(group[-1].output[0], ())
    in_shape = shapes.get(ext[0], ()) if ext else ()
    words, macs = [], 0
    if ir_op == "attention":
        splits = [
            [int(v) for v in numpy_helper.to_array(consts[nd.input[1]]).ravel()]
            for nd in group
            if nd.op_type == "Reshape" and nd.input[1] in consts
        ]
        (_, t, h, d), (_, s, kv, _) = splits[0], splits[1]
        words = [f"h{h}", f"d{d}"] + ([f"kv{kv}"] if kv != h else [])
        words += ["causal"] if any(nd.op_type == "Where" for nd in group) else []
        macs = 2 * t * s * h * d
    return _Node(
        i,
        _ONE_LINE[ir_op],
        _scope_of(group[-1].name),
        [producer[x] for x in ext],
        " ".join(words),
        out_shape,
        in_shape,
        params,
        macs,
    )


def _scope_of(name: str) -> tuple[str, ...]:
    scope_part = name.rsplit("/", 1)[0] if "/" in name else ""
    return tuple(s for s in scope_part.split("/") if s)


def _first_input(proto, nd) -> str:
    """The tensor a zero op's slice reads (the Mul's first input is the slice output)."""
    for other in proto.graph.node:
        if other.output[0] == nd.input[0]:
            return other.input[0]
    return nd.input[0]


def _abs_shape(s: Sequence[int]) -> str:
    return "x".join(str(x) for x in s) if s else "scalar"


def _rel_shape(s: Sequence[int], ref: Sequence[int]) -> str:
    """A shape relative to the block input: ``2C S/2`` (NCHW maps) or absolute otherwise."""
    if len(s) != 3 or len(ref) != 3:
        return _abs_shape(s)
    c, h, w = s
    c0, h0, w0 = ref
    if c == c0:
        cs = "C"
    elif c % c0 == 0:
        cs = f"{c // c0}C"
    elif c0 % c == 0:
        cs = f"C/{c0 // c}"
    else:
        cs = str(c)
    if (h, w) == (h0, w0):
        ss = "S"
    elif h0 % h == 0 and w0 % w == 0 and h0 // h == w0 // w:
        ss = f"S/{h0 // h}"
    else:
        ss = f"{h}x{w}"
    return f"{cs} {ss}"


def _name(part: str) -> str:
    """A scope component without its index (``cell3`` -> ``cell``; ``0`` -> ``block``)."""
    base = re.sub(r"\d+$", "", part).strip("_") or "block"
    return base.replace("_", " ")


def _groups(nodes: list[_Node], depth: int) -> list[tuple[str, list[_Node]]]:
    """Consecutive runs of nodes sharing the scope component at ``depth``."""
    out: list[tuple[str, list[_Node]]] = []
    for nd in nodes:
        key = nd.scope[depth] if len(nd.scope) > depth else ""
        if out and out[-1][0] == key:
            out[-1][1].append(nd)
        else:
            out.append((key, [nd]))
    return out


def _template(
    nodes: list[_Node], ref_shape: Sequence[int], ext: dict[int, str], rel: bool = True
) -> list[str]:
    """Lines of a node group, numbered locally; inputs outside it read ``ext[i]`` or ``x``."""
    local = {nd.idx: k for k, nd in enumerate(nodes)}
    lines = []
    for k, nd in enumerate(nodes):
        refs = []
        for i in nd.inputs:
            if i in local:
                refs.append(str(local[i]))
            else:
                refs.append(ext.get(i, "x"))
        if nd.shape == nd.in_shape and nd.inputs:
            shape = ""  # unchanged: the shape of the (first) input
        else:
            shape = "out " + (_rel_shape(nd.shape, ref_shape) if rel else _abs_shape(nd.shape))
        parts = [str(k), nd.op, nd.attrs, "in", " ".join(refs) or "-", shape]
        lines.append(" ".join(p for p in parts if p))
    return lines


def _block_lines(unit: list[_Node], ref_shape: Sequence[int]) -> list[str]:
    """A top-level block: its sub-blocks in order, runs of identical ones written once."""
    # External inputs of the block: x0, x1, ... in order of first use.
    members = {nd.idx for nd in unit}
    ext_names: dict[int, str] = {}
    for nd in unit:
        for i in nd.inputs:
            if i not in members and i not in ext_names:
                ext_names[i] = f"x{len(ext_names)}"
    subs = _groups(unit, 1)
    sub_of = {nd.idx: j for j, (_, ns) in enumerate(subs) for nd in ns}
    rendered: list[tuple[str, list[str]]] = []
    for j, (key, ns) in enumerate(subs):
        ext = dict(ext_names)
        if len(ext_names) == 1:
            # One block input: name it as the sub-block before the first one, so that a
            # run of identical sub-blocks (cells of a stage) reads the same from the start.
            ext = {i: f"p{j + 1}" for i in ext_names}
        for nd in ns:
            for i in nd.inputs:
                if i in sub_of and sub_of[i] != j:
                    ext[i] = f"p{j - sub_of[i]}"  # the j-k-th previous sub-block
        rendered.append((_name(key) if key else "", _template(ns, ref_shape, ext)))
    lines: list[str] = []
    j = 0
    while j < len(rendered):
        k = j
        while k + 1 < len(rendered) and rendered[k + 1] == rendered[j] and rendered[j][0]:
            k += 1
        name, body = rendered[j]
        count = k - j + 1
        if name:
            lines.append(f"{name} x{count} :" if count > 1 else f"{name} :")
        lines.extend(body)
        j = k + 1
    return lines


def _split(lines: list[str], header: str, budget: Callable[[str], int], max_tokens: int):
    """Chunks of ``header`` + consecutive lines, each at most ``max_tokens`` tokens."""
    chunks: list[tuple[str, int]] = []
    cur: list[str] = []
    used = budget(header) + 2
    for line in lines:
        n = budget(line)
        if cur and used + n > max_tokens:
            chunks.append((header + " " + " ; ".join(cur), len(cur)))
            cur, used = [], budget(header) + 2
        cur.append(line)
        used += n + 1
    if cur or not chunks:
        chunks.append((header + " " + " ; ".join(cur), max(len(cur), 1)))
    return chunks


def _stats(nodes: list[_Node], in_sh, out_sh) -> str:
    params = sum(nd.params for nd in nodes)
    macs = sum(nd.macs for nd in nodes)
    hist = Counter(nd.op for nd in nodes if nd.op not in ("Identity",))
    ops = ", ".join(f"{op} {c}" for op, c in sorted(hist.items(), key=lambda t: (-t[1], t[0])))
    convs = [nd for nd in nodes if nd.op == "Conv"]
    kernels = Counter(nd.attrs.split()[0] for nd in convs)
    ks = ", ".join(f"{k} {c}" for k, c in sorted(kernels.items()))
    return (
        f"network input {_abs_shape(in_sh)} output {_abs_shape(out_sh)} ; "
        f"{params / 1e6:.3f} M parameters ; {macs / 1e6:.1f} M multiply adds ; "
        f"{len(nodes)} nodes ; ops {ops} ; conv kernels {ks}"
    )


def _numbers(nodes: list[_Node]) -> tuple[float, ...]:
    params = sum(nd.params for nd in nodes)
    macs = sum(nd.macs for nd in nodes)
    return tuple(round(float(np.log10(max(v, 1))), 6) for v in (params, macs, len(nodes)))


def describe_onnx(
    proto, budget: Callable[[str], int] | None = None, max_tokens: int = 256
) -> list[Chunk]:
    """The stats, skeleton and block chunks of an ONNX model written by ``graph_to_onnx``.

    Args:
        proto: an ``onnx.ModelProto`` whose node names carry the IR scope.
        budget: token count of a string (default: words + punctuation, a close upper
            estimate for the WordPiece tokenizer is the encoder's own counter).
        max_tokens: the most tokens of one chunk.
    """
    budget = budget or _approx_tokens
    nodes, in_sh, out_sh = _parse(proto)
    chunks = [Chunk("stats", _stats(nodes, in_sh, out_sh), 1.0, _numbers(nodes))]
    units = _groups(nodes, 0)
    labels: dict[tuple[str, ...], str] = {}
    skeleton: list[tuple[str, str]] = []
    block_nodes: Counter[tuple[str, ...]] = Counter()
    block_first: dict[tuple[str, ...], tuple[str, list[str]]] = {}
    for key, unit in units:
        ref_shape = unit[0].in_shape
        lines = _block_lines(unit, ref_shape)
        sig = (_name(key) if key else "io", *lines)
        if sig not in labels:
            labels[sig] = _label(len(labels))
            block_first[sig] = (sig[0], lines)
        block_nodes[sig] += len(unit)
        skeleton.append((f"{sig[0]} {labels[sig]}", _abs_shape(ref_shape)))
    # Skeleton: consecutive identical (block, input shape) written once with a count.
    parts: list[str] = []
    j = 0
    while j < len(skeleton):
        k = j
        while k + 1 < len(skeleton) and skeleton[k + 1][0] == skeleton[j][0]:
            k += 1
        name, shape = skeleton[j]
        parts.append(f"{name} {shape}" + (f" x{k - j + 1}" if k > j else ""))
        j = k + 1
    chunks.append(Chunk("skeleton", "blocks : " + " ; ".join(parts), 1.0))
    total = max(len(nodes), 1)
    for sig, (name, lines) in block_first.items():
        header = f"block {labels[sig]} {name} :"
        pieces = _split(lines, header, budget, max_tokens)
        n_lines = sum(n for _, n in pieces)
        for text, n in pieces:
            # Weight: the share of the network's nodes this chunk stands for.
            chunks.append(Chunk("block", text, block_nodes[sig] / total * n / n_lines))
    return chunks


def describe_flat(
    proto, budget: Callable[[str], int] | None = None, max_tokens: int = 256
) -> list[Chunk]:
    """The plain node-by-node text (global numbering, absolute shapes) in chunks."""
    budget = budget or _approx_tokens
    nodes, _, _ = _parse(proto)
    lines = _template(nodes, (), {-1: "input"}, rel=False)
    pieces = _split(lines, "onnx graph :", budget, max_tokens)
    return [Chunk("flat", text, n / max(len(nodes), 1)) for text, n in pieces]


def _label(i: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[i] if i < 26 else f"Z{i}"


def _approx_tokens(text: str) -> int:
    # Words, plus one per digit group and punctuation mark: WordPiece splits "k3" in two.
    return len(re.findall(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]", text))


def describe(graph: ArchGraph, **kwargs) -> list[Chunk]:
    """:func:`describe_onnx` of the structure-only ONNX export of ``graph``."""
    from nas.onnx_export import graph_to_onnx

    return describe_onnx(graph_to_onnx(graph, fill="none", check=False), **kwargs)
