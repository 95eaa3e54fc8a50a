"""The operator handlers of the ONNX reader (:mod:`nas.onnx_import`): one method per
ONNX operator, ``_op_<OpType>``, each emitting IR nodes or refusing with a named error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.onnx_fold import attrs as _attrs


@dataclass
class _Value:
    """An ONNX tensor as the IR sees it: the node computing it and its layout."""

    node: int
    rank: int  # the ONNX rank, batch included: 4 for maps, 2 for vectors


def _unary(op: str):
    """The handler of an ONNX activation that is the IR's ``op``."""

    def handler(self: OpHandlers, nd) -> None:
        self.emit(nd, op, [self.value(nd)])

    return handler


class OpHandlers:
    """Mixin of :class:`nas.onnx_import._Reader`: ``self.emit``, ``self.value``,
    ``self.refuse``, ``self.consts``, ``self.shape`` ... come from there."""

    def _op_Conv(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        w = self.shape(nd.input[1])
        if len(w) != 4:
            self.refuse(nd, f"with a {len(w)}-D kernel")
        kernel = [int(k) for k in a.get("kernel_shape", w[2:])]
        stride = [int(s) for s in a.get("strides", [1, 1])]
        dil = [int(d) for d in a.get("dilations", [1, 1])]
        pads = self._pads(nd, a, kernel, stride, dil)
        self.emit(
            nd,
            "conv",
            [self.value(nd)],
            out_channels=int(w[0]),
            kernel=_pair(kernel),
            stride=_pair(stride),
            dilation=_pair(dil),
            padding=pads,
            groups=int(a.get("group", 1)),
            bias=len(nd.input) > 2 and bool(nd.input[2]),
        )

    def _pads(self, nd, a: dict, kernel, stride, dil) -> list[int]:
        """ONNX ``pads`` ``[top, left, bottom, right]`` (or ``auto_pad``) as the IR's
        ``[top, bottom, left, right]``."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            h, w = self.shape(nd.input[0])[2:]
            out = []
            for size, k, s, d in zip((h, w), kernel, stride, dil, strict=True):
                total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
                lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
                out.append((lo, total - lo))
            return [out[0][0], out[0][1], out[1][0], out[1][1]]
        p = [int(x) for x in a.get("pads", [0, 0, 0, 0])]
        return [p[0], p[2], p[1], p[3]]

    def _op_Gemm(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            self.refuse(nd, "with transA, alpha or beta")
        w = self.shape(nd.input[1])
        out = int(w[0] if a.get("transB", 0) else w[1])
        bias = len(nd.input) > 2 and bool(nd.input[2])
        self.emit(nd, "dense", [self.value(nd)], out_features=out, bias=bias)

    def _op_MatMul(self, nd) -> None:
        if nd.input[1] not in self.consts and nd.input[1] not in self.shapes:
            self.refuse(nd)
        if nd.input[1] in self.values:
            self.refuse(nd, "of two computed tensors")
        out = int(self.shape(nd.input[1])[-1])
        # MatMul + Add(constant bias) is one dense layer with a bias.
        cons = self.consumers.get(nd.output[0], [])
        if len(cons) == 1 and cons[0].op_type == "Add":
            add = cons[0]
            other = [x for x in add.input if x != nd.output[0]]
            if len(other) == 1 and other[0] not in self.values:
                self.skip.add(list(self.model.graph.node).index(add))
                self.emit(nd, "dense", [self.value(nd)], out_features=out, bias=True)
                self.values[add.output[0]] = self.values[nd.output[0]]
                return
        self.emit(nd, "dense", [self.value(nd)], out_features=out, bias=False)

    def _op_BatchNormalization(self, nd) -> None:
        eps = float(_attrs(self.onnx, nd).get("epsilon", 1e-5))
        self.emit(nd, "batch_norm", [self.value(nd)], eps=eps)

    _op_Relu = _unary("relu")

    def _op_Sigmoid(self, nd) -> None:
        cons = self.consumers.get(nd.output[0], [])
        if len(cons) == 1 and cons[0].op_type == "Mul" and nd.input[0] in cons[0].input:
            return  # x * sigmoid(x): the Mul becomes one swish
        self.emit(nd, "sigmoid", [self.value(nd)])

    _op_HardSwish = _unary("hswish")
    _op_Tanh = _unary("tanh")
    _op_Gelu = _unary("gelu")

    def _op_HardSigmoid(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        if abs(a.get("alpha", 0.2) - 1 / 6) > 1e-4 or abs(a.get("beta", 0.5) - 0.5) > 1e-4:
            self.refuse(nd, "other than relu6(x + 3) / 6")
        self.emit(nd, "hsigmoid", [self.value(nd)])

    def _op_Clip(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        lo = a.get("min", self._scalar(nd, 1))
        hi = a.get("max", self._scalar(nd, 2))
        if lo == 0 and hi == 6:
            self.emit(nd, "relu6", [self.value(nd)])
        elif lo == 0 and hi is None:
            self.emit(nd, "relu", [self.value(nd)])
        else:
            self.refuse(nd, f"to [{lo}, {hi}]")

    def _scalar(self, nd, i: int) -> float | None:
        if i < len(nd.input) and nd.input[i] in self.consts:
            return float(self.consts[nd.input[i]].ravel()[0])
        return None

    def _op_Add(self, nd) -> None:
        ins = [x for x in nd.input if x in self.values]
        if len(ins) != len(nd.input):
            self.refuse(nd, "of a constant or a second graph input")
        self.emit(nd, "add", [self.values[x] for x in ins])

    def _op_Sum(self, nd) -> None:
        self._op_Add(nd)

    def _op_Mul(self, nd) -> None:
        a, b = nd.input
        for x, s in ((a, b), (b, a)):
            src = self.producer.get(s)
            if src is not None and src.op_type == "Sigmoid" and src.input[0] == x:
                if len(self.consumers.get(s, [])) == 1:  # x * sigmoid(x): swish
                    self.emit(nd, "swish", [self.values[x]])
                    return
        if self._zero(nd):
            return
        if not all(x in self.values for x in nd.input):
            self.refuse(nd, "by a constant")
        va, vb = self.values[a], self.values[b]
        if va.rank != vb.rank:
            self.refuse(nd, "of tensors of different ranks")
        self.emit(nd, "mul", [va, vb])

    def _op_Concat(self, nd) -> None:
        ins = [self.value(nd, i) for i in range(len(nd.input))]
        axis = int(_attrs(self.onnx, nd)["axis"])
        if axis not in (1, -ins[0].rank + 1) and not (ins[0].rank == 2 and axis == -1):
            self.refuse(nd, f"on axis {axis} (the IR concatenates channels)")
        self.emit(nd, "concat", ins)

    def _pool(self, nd, op: str) -> None:
        a = _attrs(self.onnx, nd)
        kernel = [int(k) for k in a["kernel_shape"]]
        stride = [int(s) for s in a.get("strides", [1, 1])]
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.refuse(nd, "with dilation")
        pads = self._pads(nd, a, kernel, stride, [1, 1])
        if a.get("ceil_mode", 0):  # extra bottom/right padding gives the ceil-mode size
            h, w = self.shape(nd.input[0])[2:]
            for axis, size in ((0, h), (1, w)):
                lo, hi = pads[2 * axis], pads[2 * axis + 1]
                span = size + lo + hi - kernel[axis]
                if span % stride[axis]:
                    pads[2 * axis + 1] += stride[axis] - span % stride[axis]
            self.notes.append(f"{nd.name or op}: ceil_mode read as extra bottom/right padding")
        attrs: dict[str, Any] = {"kernel": _pair(kernel), "stride": _pair(stride), "padding": pads}
        if op == "avg_pool":
            attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        self.emit(nd, op, [self.value(nd)], **attrs)

    def _op_MaxPool(self, nd) -> None:
        if len(nd.output) > 1 and nd.output[1]:
            self.refuse(nd, "with indices")
        self._pool(nd, "max_pool")

    def _op_AveragePool(self, nd) -> None:
        self._pool(nd, "avg_pool")

    def _op_GlobalAveragePool(self, nd) -> None:
        self.emit(nd, "global_pool", [self.value(nd)], mode="avg", keepdims=True)

    def _op_GlobalMaxPool(self, nd) -> None:
        self.emit(nd, "global_pool", [self.value(nd)], mode="max", keepdims=True)

    def _op_ReduceMean(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        axes = a.get("axes")
        if axes is None and len(nd.input) > 1:
            axes = self.consts.get(nd.input[1])
        v = self.value(nd)
        if v.rank != 4 or sorted(int(x) % 4 for x in (axes if axes is not None else [])) != [2, 3]:
            self.refuse(nd, "over axes other than height and width")
        keep = bool(a.get("keepdims", 1))
        self.emit(nd, "global_pool", [v], rank=4 if keep else 2, mode="avg", keepdims=keep)

    def _flatten_to_vector(self, nd) -> None:
        v = self.value(nd)
        self.emit(nd, "flatten", [v], rank=2) if v.rank == 4 else self.alias(nd, v)

    def _op_Flatten(self, nd) -> None:
        if int(_attrs(self.onnx, nd).get("axis", 1)) != 1:
            self.refuse(nd, "on an axis other than 1")
        self._flatten_to_vector(nd)

    def _op_Squeeze(self, nd) -> None:
        out = self.shape(nd.output[0])
        if len(out) == 2 and self.value(nd).rank == 4:
            self._flatten_to_vector(nd)
        else:
            self.refuse(nd, f"to shape {out}")

    def _op_Reshape(self, nd) -> None:
        v = self.value(nd)
        out = self.shape(nd.output[0])
        if len(out) == 2 and out[1] is not None:
            self._flatten_to_vector(nd)
            return
        if len(out) == 5 and v.rank == 4 and self._shuffle(nd, out):
            return
        if self.shape(nd.input[0]) == out:
            self.alias(nd, v)
            return
        self.refuse(nd, f"to shape {out}")

    def _shuffle(self, nd, out: tuple) -> bool:
        """``Reshape(N, g, C/g, H, W)`` -> ``Transpose(0, 2, 1, 3, 4)`` -> ``Reshape(N, C,
        H, W)``: a channel shuffle with ``g`` groups."""
        nodes = list(self.model.graph.node)
        tr = self.consumers.get(nd.output[0], [])
        if len(tr) != 1 or tr[0].op_type != "Transpose":
            return False
        if list(_attrs(self.onnx, tr[0]).get("perm", [])) != [0, 2, 1, 3, 4]:
            return False
        back = self.consumers.get(tr[0].output[0], [])
        if len(back) != 1 or back[0].op_type != "Reshape":
            return False
        if self.shape(back[0].output[0]) != self.shape(nd.input[0]):
            return False
        self.skip.update({nodes.index(tr[0]), nodes.index(back[0])})
        self.emit(back[0], "channel_shuffle", [self.value(nd)], groups=int(out[1]))
        return True

    def _perm(self, nd) -> list[int] | None:
        if nd.op_type != "Transpose":
            return None
        return [int(p) for p in _attrs(self.onnx, nd).get("perm", [])]

    def _op_Transpose(self, nd) -> None:
        if self._perm(nd) == [0, 2, 3, 1] and nd.output[0] == self.model.graph.output[0].name:
            self.alias(nd, self.value(nd))  # NCHW back to NHWC at the output: the IR's layout
            return
        self.refuse(nd, f"with perm {self._perm(nd)}")

    def _op_Identity(self, nd) -> None:
        self.alias(nd, self.value(nd))

    def _op_Dropout(self, nd) -> None:
        self.alias(nd, self.value(nd))

    def _op_Pad(self, nd) -> None:
        a = _attrs(self.onnx, nd)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = a.get("pads")
        if pads is None and len(nd.input) > 1:
            pads = self.consts.get(nd.input[1])
        value = self._scalar(nd, 2) or 0.0
        v = self.value(nd)
        if mode != "constant" or value != 0.0 or pads is None or v.rank != 4:
            self.refuse(nd, f"({mode}, value {value})")
        p = [int(x) for x in pads]
        if any(p[i] for i in (0, 1, 4, 5)) or min(p) < 0:
            self.refuse(nd, "outside the spatial axes")
        self.emit(nd, "pad", [v], top=p[2], left=p[3], bottom=p[6], right=p[7])

    def _slice_args(self, nd) -> tuple[list[int], list[int], list[int], list[int]]:
        got = [self.consts.get(x) if x else None for x in nd.input[1:]]
        starts, ends, axes, steps = (list(got) + [None] * 4)[:4]
        if starts is None or ends is None:
            self.refuse(nd, "with computed bounds")
        rank = self.value(nd).rank
        axes = [int(a) % rank for a in axes] if axes is not None else list(range(len(starts)))
        steps = [int(x) for x in steps] if steps is not None else [1] * len(axes)
        return [int(x) for x in starts], [int(x) for x in ends], axes, steps

    def _op_Slice(self, nd) -> None:
        v = self.value(nd)
        starts, ends, axes, steps = self._slice_args(nd)
        cons = self.consumers.get(nd.output[0], [])
        if len(cons) == 1 and cons[0].op_type == "Mul" and self._times_zero(cons[0]):
            return  # read with the Mul as one zero op (_zero)
        shape = self.shape(nd.input[0])
        if axes == [1] and steps == [1]:
            c = shape[1]
            lo, hi = (int(np.clip(b if b >= 0 else b + c, 0, c)) for b in (starts[0], ends[0]))
            self.emit(nd, "split", [v], start=lo, size=hi - lo)
            return
        if v.rank == 4 and set(axes) <= {2, 3} and set(steps) == {1}:
            crop = {"top": 0, "bottom": 0, "left": 0, "right": 0}
            for a, lo, hi in zip(axes, starts, ends, strict=True):
                size = shape[a]
                lo, hi = (int(np.clip(b if b >= 0 else b + size, 0, size)) for b in (lo, hi))
                crop["top" if a == 2 else "left"] = lo
                crop["bottom" if a == 2 else "right"] = size - hi
            self.emit(nd, "crop", [v], **crop)
            return
        self.refuse(nd, f"on axes {axes} with steps {steps}")

    def _times_zero(self, nd) -> bool:
        return any(k in self.consts and not np.any(self.consts[k]) for k in nd.input)

    def _zero(self, nd) -> bool:
        """``Slice(every s-th pixel) * 0`` (how this project exports its ``zero`` op): a
        zero of stride ``s``."""
        a, b = nd.input
        for x, k in ((a, b), (b, a)):
            if k not in self.consts or np.any(self.consts[k]):
                continue
            src = self.producer.get(x)
            if src is not None and src.op_type == "Slice" and x not in self.values:
                stride, base = max(self._slice_args(src)[3]), self.value(src)
            elif x in self.values:
                stride, base = 1, self.values[x]
            else:
                continue
            c = self.shape(nd.output[0])[1] if base.rank == 4 else 0
            self.emit(nd, "zero", [base], stride=stride, out_channels=c)
            return True
        return False

    def _op_Split(self, nd) -> None:
        v = self.value(nd)
        a = _attrs(self.onnx, nd)
        if int(a.get("axis", 0)) % v.rank != 1:
            self.refuse(nd, "on an axis other than the channels")
        sizes = a.get("split")
        if sizes is None and len(nd.input) > 1 and nd.input[1]:
            sizes = self.consts.get(nd.input[1])
        c = self.shape(nd.input[0])[1]
        if sizes is None:
            sizes = [c // len(nd.output)] * len(nd.output)
        start = 0
        for out, size in zip(nd.output, sizes, strict=True):
            node = self.ir.add(
                "split", [v.node], scope=_scope(nd.name), start=start, size=int(size)
            )
            self.values[out] = _Value(node, v.rank)
            start += int(size)

    def _op_Softmax(self, nd) -> None:
        if nd.output[0] != self.model.graph.output[0].name:
            self.refuse(nd, "inside the network")
        self.notes.append(f"dropped the final {nd.op_type}: a monotone map of the logits")
        self.alias(nd, self.value(nd))

    _op_LogSoftmax = _op_Softmax


def _scope(name: str) -> str:
    """A torch-style node name ``/layer1/layer1.0/conv1/Conv`` as a scope ``layer1/0/conv1``."""
    parts = [p for p in name.split("/") if p][:-1]
    out: list[str] = []
    for p in parts:
        tail = p.rsplit(".", 1)[-1] if out and p.startswith(out[-1] + ".") else p
        out.append(tail)
    return "/".join(out)


def _pair(v: list[int]) -> int | list[int]:
    return v[0] if len(set(v)) == 1 else [int(v[0]), int(v[1])]
