"""NASNet operations as IR nodes, following the TF code (TF-slim ``nasnet_utils.py`` and, for
the operations NASNet-A does not use, the TPU AmoebaNet ``network_utils.py``).

Convolutions have no bias and TF "SAME" padding (asymmetric at stride 2, written as explicit
``[top, bottom, left, right]`` padding); every BatchNorm has scale and offset. Average
pooling with "SAME" padding excludes the padding from the mean. A :class:`Builder` tracks
shapes while the graph is built, because the TF code chooses layers by the shapes it meets
(a 1x1 projection only where channel counts differ, a factorized reduction only where
resolutions differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nas.graph import ArchGraph


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@dataclass
class Builder:
    """An :class:`ArchGraph` under construction with the shape of every node it made."""

    g: ArchGraph
    shapes: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def shape(self, x: int) -> tuple[int, ...]:
        return self.shapes[x]

    def channels(self, x: int) -> int:
        return self.shapes[x][-1]

    def _add(self, op: str, inputs: list[int], out: tuple[int, ...], scope: str, **attrs) -> int:
        n = self.g.add(op, inputs, scope=scope, **attrs)
        self.shapes[n] = out
        return n

    def input(self, shape: tuple[int, ...]) -> int:
        return self._add("input", [], tuple(shape), "", shape=list(shape))

    def same(self, op: str, x: int, scope: str, **attrs) -> int:
        """An op that keeps the shape (relu, batch_norm, identity, dropout, ...)."""
        return self._add(op, [x], self.shapes[x], scope, **attrs)

    def conv(
        self,
        x: int,
        out: int,
        kernel: int | tuple[int, int],
        scope: str,
        stride: int | tuple[int, int] = 1,
        dilation: int = 1,
        groups: int = 1,
        padding: str = "SAME",
    ) -> int:
        h, w, _ = self.shapes[x]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        if padding == "SAME":
            t, b = same_padding(h, kh, sh, dilation)
            left, r = same_padding(w, kw, sw, dilation)
        else:
            t = b = left = r = 0
        oh = (h + t + b - dilation * (kh - 1) - 1) // sh + 1
        ow = (w + left + r - dilation * (kw - 1) - 1) // sw + 1
        return self._add(
            "conv",
            [x],
            (oh, ow, out),
            scope,
            out_channels=out,
            kernel=[kh, kw] if kh != kw else kh,
            stride=[sh, sw] if sh != sw else sh,
            padding=[t, b, left, r],
            dilation=dilation,
            groups=groups,
        )

    def pool(self, x: int, kind: str, kernel: int, stride: int, scope: str) -> int:
        h, w, c = self.shapes[x]
        t, b = same_padding(h, kernel, stride)
        left, r = same_padding(w, kernel, stride)
        shape = (-(-h // stride), -(-w // stride), c)
        attrs = {"kernel": kernel, "stride": stride, "padding": [t, b, left, r]}
        if kind == "avg":
            attrs["count_include_pad"] = False
        return self._add(f"{kind}_pool", [x], shape, scope, **attrs)

    def concat(self, xs: list[int], scope: str) -> int:
        h, w, _ = self.shapes[xs[0]]
        return self._add("concat", xs, (h, w, sum(self.channels(x) for x in xs)), scope)

    def add(self, xs: list[int], scope: str) -> int:
        return self._add("add", xs, self.shapes[xs[0]], scope)

    def crop_pad_shift(self, x: int, scope: str) -> int:
        """TF's ``pad(x, bottom/right 1)[:, 1:, 1:, :]``: shift the map by one pixel."""
        h, w, c = self.shapes[x]
        p = self._add("pad", [x], (h + 1, w + 1, c), scope, bottom=1, right=1)
        return self._add("crop", [p], (h, w, c), scope, top=1, left=1)

    def global_pool(self, x: int, scope: str) -> int:
        return self._add("global_pool", [x], (self.channels(x),), scope)

    def dense(self, x: int, out: int, scope: str) -> int:
        return self._add("dense", [x], (out,), scope, out_features=out)

    def conv_bn(self, x: int, out: int, kernel, scope: str, stride=1, relu: bool = True) -> int:
        """(ReLU,) conv, BN: TF's ``relu -> slim.conv2d -> batch_norm``."""
        if relu:
            x = self.same("relu", x, scope)
        x = self.conv(x, out, kernel, scope, stride=stride)
        return self.same("batch_norm", x, scope)


def factorized_reduction(b: Builder, x: int, out: int, stride: int, scope: str) -> int:
    """TF ``factorized_reduction``: at stride 1 a 1x1 conv + BN; at stride 2 two 1x1 stride-2
    convs (the second on the input shifted by one pixel), concatenated, BN. No ReLU.

    TF asserts an even ``out``; for an odd one (the ImageNet stem cells of F=50, the
    AmoebaNet-A mobile setting) the paths get ``out // 2`` and ``out - out // 2`` filters.
    """
    if stride == 1:
        return b.conv_bn(x, out, 1, f"{scope}/path", relu=False)
    p1 = b.conv(x, out // 2, 1, f"{scope}/path1", stride=stride)
    p2 = b.crop_pad_shift(x, f"{scope}/path2")
    p2 = b.conv(p2, out - out // 2, 1, f"{scope}/path2", stride=stride)
    y = b.concat([p1, p2], scope)
    return b.same("batch_norm", y, scope)


def stacked_separable(b: Builder, x: int, op: str, stride: int, filters: int, scope: str) -> int:
    """``separable_kxk_n``: n times (ReLU, depthwise kxk, pointwise 1x1, BN); stride on the
    first depthwise."""
    parts = op.split("_")
    kernel = int(parts[1].split("x")[0])
    layers = int(parts[2])
    for i in range(layers):
        sc = f"{scope}/sep{i + 1}"
        x = b.same("relu", x, sc)
        cin = b.channels(x)
        x = b.conv(x, cin, kernel, sc, stride=stride if i == 0 else 1, groups=cin)
        x = b.conv(x, filters, 1, sc)
        x = b.same("batch_norm", x, sc)
    return x


def _conv_op(b: Builder, x: int, op: str, stride: int, filters: int, scope: str) -> int:
    """The TPU code's ``_apply_conv_operation`` (conv part of a bottleneck op)."""
    if op == "3x3":
        return b.conv(x, filters, 3, scope, stride=stride)
    if op in ("1x7_7x1", "1x3_3x1"):
        k = int(op[2])
        x = b.conv(x, filters, (1, k), scope, stride=(1, stride))
        x = b.same("batch_norm", x, scope)
        x = b.same("relu", x, scope)
        return b.conv(x, filters, (k, 1), scope, stride=(stride, 1))
    if op.startswith("dilated_3x3_rate_"):
        return b.conv(x, filters, 3, scope, stride=stride, dilation=int(op.rsplit("_", 1)[1]))
    raise ValueError(f"not a conv op: {op!r}")


def apply_op(b: Builder, x: int, op: str, stride: int, filters: int, scope: str) -> int:
    """One NASNet operation (TPU ``_apply_operation``; TF-slim for the NASNet-A subset).

    The result has ``filters`` channels; ``stride`` is 2 only on a cell input of a reduction
    cell.
    """
    cin = b.channels(x)
    if op.startswith("separable_"):
        return stacked_separable(b, x, op, stride, filters, scope)
    if op in ("identity", "1x1"):
        if stride > 1 or op == "1x1" or cin != filters:
            return b.conv_bn(x, filters, 1, scope, stride=stride)
        return b.same("identity", x, scope)
    if "pool" in op:
        kind, _, size = op.split("_")
        y = b.pool(x, kind, int(size.split("x")[0]), stride, scope)
        if cin != filters:
            y = b.conv_bn(y, filters, 1, scope, relu=False)
        return y
    if op in ("3x3", "1x7_7x1", "1x3_3x1") or op.startswith("dilated_3x3_rate_"):
        reduced = int(3 * filters / 8) if op == "1x3_3x1" else int(filters / 4)
        if reduced < 1:
            y = b.same("relu", x, scope)
            y = _conv_op(b, y, op, stride, filters, scope)
            return b.same("batch_norm", y, scope)
        y = b.conv_bn(x, reduced, 1, f"{scope}/pre")
        y = b.same("relu", y, scope)
        y = _conv_op(b, y, op, stride, reduced, scope)
        y = b.same("batch_norm", y, scope)
        return b.conv_bn(y, filters, 1, f"{scope}/post")
    raise ValueError(f"unknown NASNet op {op!r}")


def spatial(b: Builder, x: int) -> tuple[int, int]:
    return b.shape(x)[:2]
