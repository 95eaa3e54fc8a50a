"""Once-for-All networks, layer by layer, and their expansion into the IR.

A :class:`NetSpec` is the static, layer-by-layer description of one network, the same
information as OFA's ``net.config`` (``MobileNetV3`` or ``ProxylessNASNets``):

- ``mbv3`` (``ofa/imagenet_classification/networks/mobilenet_v3.py``): first conv ->
  MBConv blocks -> final expand 1x1 ConvLayer -> global average pool -> feature-mix 1x1
  ConvLayer (no BN, no bias) -> flatten -> dropout -> linear classifier.
- ``proxyless`` (``networks/proxyless_nets.py``): first conv -> MBConv blocks -> feature-mix
  1x1 ConvLayer (with BN) -> global average pool -> dropout -> linear classifier.

The elastic spaces produce a :class:`NetSpec` for a (ks, e, d) choice exactly as OFA's
``get_active_subnet`` does (:func:`mbv3_elastic_spec`, :func:`proxyless_elastic_spec`);
published networks are read from their ``net.config`` (``specialized.py``). One builder,
:func:`build`, turns any of them into an :class:`~nas.graph.ArchGraph`.

Counting follows OFA (``ofa/utils/flops_counter.py``): FLOPs are the multiply-accumulates
of convolution and linear weights only, no bias, BN, activation or pooling
(:data:`OFA_CONVENTION`); parameters are every trainable number, biases and BN affine
parameters included (``count_parameters``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nas.search_spaces.ofa.ops import CHANNEL_DIVISIBLE, conv_layer, make_divisible, mb_block

from nas.graph import ArchGraph, CostConvention

OFA_CONVENTION = CostConvention(conv_bias=False, dense_bias=False, dense=True)
"""OFA's ``count_net_flops``: conv and linear weight MACs, biases not counted."""

FAMILIES = ("mbv3", "proxyless")

# (input shape, classes) per dataset; ``None``: an RGB input whose side is the genotype's
# resolution. The built-in digits are served at the genotype's resolution too (upsampled and
# repeated to three channels by nas.pipeline): at 8x8 three of five stages would run on 1x1
# maps, where every kernel size is the same centre tap.
DATASETS: dict[str, tuple[tuple[int, int, int] | None, int]] = {
    "imagenet": (None, 1000),
    "digits": (None, 10),
}


@dataclass(frozen=True)
class ConvSpec:
    """OFA's ``ConvLayer`` (``weight_bn_act``, same padding, dilation 1, groups 1)."""

    out_channels: int
    kernel: int = 1
    stride: int = 1
    bias: bool = False
    use_bn: bool = True
    act: str | None = "relu"


@dataclass(frozen=True)
class MBBlock:
    """One ``ResidualBlock(MBConvLayer, shortcut)``.

    Attributes:
        out_channels, kernel, stride, act, use_se: as in ``MBConvLayer``.
        expand_ratio: OFA's expand ratio; 1 means no inverted-bottleneck 1x1 conv; ``None``
            when only ``mid_channels`` is given (MobileNetV3-Large).
        mid_channels: width of the depthwise conv (``make_divisible(round(in * e), 8)`` in
            the elastic spaces, explicit in ``net.config``).
        residual: whether the block has an identity shortcut.
    """

    out_channels: int
    kernel: int
    stride: int
    expand_ratio: float | None
    mid_channels: int
    act: str | None
    use_se: bool
    residual: bool


@dataclass(frozen=True)
class LinearSpec:
    """OFA's ``LinearLayer`` (dropout before the weight)."""

    out_features: int
    bias: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class NetSpec:
    """A whole OFA network, layer by layer (hashable, comparable)."""

    family: str
    first_conv: ConvSpec
    blocks: tuple[MBBlock, ...]
    final_expand: ConvSpec | None
    feature_mix: ConvSpec | None
    classifier: LinearSpec
    bn: tuple[float, float] = (0.1, 1e-5)

    def with_classes(self, n: int) -> NetSpec:
        """The same network with an ``n``-way classifier."""
        c = self.classifier
        return NetSpec(
            self.family,
            self.first_conv,
            self.blocks,
            self.final_expand,
            self.feature_mix,
            LinearSpec(n, c.bias, c.dropout),
            self.bn,
        )


def build(
    spec: NetSpec,
    input_shape: Sequence[int],
    block_ids: Sequence[int] | None = None,
) -> ArchGraph:
    """Expand a network into the IR (OFA's counting convention).

    Args:
        spec: the network.
        input_shape: ``(H, W, C)`` of one sample.
        block_ids: OFA's index of each block in ``blocks`` (the supernet's index for an
            elastic subnet, whose skipped layers keep their numbers); ``0..n-1`` if omitted.
            Used only in scopes (``blocks/<id>/...``), which follow OFA's ``state_dict`` names.
    """
    ids = list(range(len(spec.blocks))) if block_ids is None else list(block_ids)
    if len(ids) != len(spec.blocks):
        raise ValueError(f"{len(ids)} block ids for {len(spec.blocks)} blocks")
    g = ArchGraph(convention=OFA_CONVENTION)
    x = g.add("input", shape=list(input_shape))
    x = _conv(g, x, spec.first_conv, "first_conv", spec.bn)
    for i, b in zip(ids, spec.blocks, strict=True):
        x = mb_block(
            g,
            x,
            out_channels=b.out_channels,
            kernel=b.kernel,
            stride=b.stride,
            mid_channels=b.mid_channels,
            expand=b.expand_ratio != 1,
            act=b.act,
            use_se=b.use_se,
            residual=b.residual,
            scope=f"blocks/{i}",
            bn=spec.bn,
        )
    if spec.family == "mbv3":
        if spec.final_expand is not None:
            x = _conv(g, x, spec.final_expand, "final_expand_layer", spec.bn)
        x = g.add("global_pool", [x], scope="global_avg_pool", keepdims=True)
        if spec.feature_mix is not None:
            x = _conv(g, x, spec.feature_mix, "feature_mix_layer", spec.bn)
        x = g.add("flatten", [x], scope="flatten")
    else:
        if spec.feature_mix is not None:
            x = _conv(g, x, spec.feature_mix, "feature_mix_layer", spec.bn)
        x = g.add("global_pool", [x], scope="global_avg_pool")
    c = spec.classifier
    if c.dropout > 0:
        x = g.add("dropout", [x], scope="classifier/dropout", rate=float(c.dropout))
    x = g.add("dense", [x], scope="classifier/linear", out_features=c.out_features, bias=c.bias)
    g.add("output", [x])
    return g.finalize()


def ofa_profile_flops(graph: ArchGraph) -> int:
    """The FLOPs that OFA's own counter prints for ``graph`` (``count_net_flops``).

    OFA's ``profile`` stores each layer's count in a float32 tensor and sums them in float32,
    in module order, so its totals lose the low bits: the largest OFA-MobileNetV3 w1.0 subnet
    at 224 has 566,170,656 MACs exactly and OFA prints 566,170,688. ``graph.flops()`` is the
    exact count; this reproduces OFA's number bit for bit (checked on all 50 published nets).
    """
    total = np.float32(0)
    for n in sorted(graph.g.nodes):  # insertion order = OFA's module order
        if graph.op(n) in ("conv", "dense"):
            total = np.float32(total + np.float32(graph.node_macs(n)))
    return int(total)


def _conv(g: ArchGraph, x: int, c: ConvSpec, scope: str, bn: tuple[float, float]) -> int:
    return conv_layer(
        g,
        x,
        c.out_channels,
        c.kernel,
        c.stride,
        scope,
        bias=c.bias,
        use_bn=c.use_bn,
        act=c.act,
        bn=bn,
    )


# --------------------------------------------------------------------------------------
# The elastic spaces (OFA's get_active_subnet)
# --------------------------------------------------------------------------------------

KS_CHOICES = (3, 5, 7)
E_CHOICES = (3, 4, 6)
D_CHOICES = (2, 3, 4)
MAX_DEPTH = 4
N_UNITS = 5

# ofa_mbv3.py: base_stage_width and the per-stage settings (stage 0 = the first block).
MBV3_BASE_WIDTH = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
MBV3_STRIDES = (1, 2, 2, 2, 1, 2)
MBV3_ACTS = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
MBV3_SE = (False, False, True, False, True, True)

# ofa_proxyless.py: ProxylessNAS stage widths; five elastic units and one fixed 1-layer unit.
PROXYLESS_BASE_WIDTH = (32, 16, 24, 40, 80, 96, 192, 320, 1280)
PROXYLESS_STRIDES = (2, 2, 2, 1, 2, 1)


def _width(base: int, width_mult: float) -> int:
    return make_divisible(base * width_mult, CHANNEL_DIVISIBLE)


def _elastic_blocks(
    in_channels: int,
    widths: Sequence[int],
    strides: Sequence[int],
    acts: Sequence[str],
    ses: Sequence[bool],
    depths: Sequence[int],
    ks: Sequence[int],
    e: Sequence[int],
    layers_per_unit: Sequence[int],
) -> tuple[list[MBBlock], list[int]]:
    """The active blocks of the elastic units and their supernet indices (from 1)."""
    blocks: list[MBBlock] = []
    ids: list[int] = []
    feature = in_channels
    start = 0
    for width, stride, act, se, depth, n in zip(
        widths, strides, acts, ses, depths, layers_per_unit, strict=True
    ):
        for j in range(depth):
            layer = start + j
            s = stride if j == 0 else 1
            mid = make_divisible(round(feature * e[layer]), CHANNEL_DIVISIBLE)
            blocks.append(
                MBBlock(
                    out_channels=width,
                    kernel=ks[layer],
                    stride=s,
                    expand_ratio=e[layer],
                    mid_channels=mid,
                    act=act,
                    use_se=se,
                    residual=s == 1 and feature == width,
                )
            )
            ids.append(1 + layer)
            feature = width
        start += n
    return blocks, ids


def mbv3_elastic_spec(
    ks: Sequence[int],
    e: Sequence[int],
    d: Sequence[int],
    width_mult: float = 1.0,
    n_classes: int = 1000,
    dropout: float = 0.1,
) -> tuple[NetSpec, list[int]]:
    """The OFA-MobileNetV3 subnet for 20 kernel sizes, 20 expand ratios and 5 depths.

    Returns the network and the supernet index of each of its blocks (0 = first block).
    """
    w = [_width(b, width_mult) for b in MBV3_BASE_WIDTH[:-2]]
    final_expand = _width(MBV3_BASE_WIDTH[-2], width_mult)
    last = _width(MBV3_BASE_WIDTH[-1], width_mult)
    first = MBBlock(
        out_channels=w[1],
        kernel=3,
        stride=MBV3_STRIDES[0],
        expand_ratio=1,
        mid_channels=w[0],
        act=MBV3_ACTS[0],
        use_se=MBV3_SE[0],
        residual=w[0] == w[1],
    )
    rest, ids = _elastic_blocks(
        w[1], w[2:], MBV3_STRIDES[1:], MBV3_ACTS[1:], MBV3_SE[1:], d, ks, e, [MAX_DEPTH] * N_UNITS
    )
    spec = NetSpec(
        family="mbv3",
        first_conv=ConvSpec(w[0], 3, 2, act="h_swish"),
        blocks=(first, *rest),
        final_expand=ConvSpec(final_expand, 1, 1, act="h_swish"),
        feature_mix=ConvSpec(last, 1, 1, use_bn=False, act="h_swish"),
        classifier=LinearSpec(n_classes, True, dropout),
        bn=(0.1, 1e-5),
    )
    return spec, [0, *ids]


def proxyless_elastic_spec(
    ks: Sequence[int],
    e: Sequence[int],
    d: Sequence[int],
    width_mult: float = 1.3,
    n_classes: int = 1000,
    dropout: float = 0.1,
) -> tuple[NetSpec, list[int]]:
    """The OFA-ProxylessNAS subnet for 21 kernel sizes, 21 expand ratios and 5 depths.

    The sixth unit of ``ofa_proxyless.py`` has one layer (depth fixed at 1) whose kernel and
    expand ratio are elastic: entries 20 of ``ks`` and ``e``.
    """
    base = PROXYLESS_BASE_WIDTH
    stem = _width(base[0], width_mult)
    first_w = _width(base[1], width_mult)
    widths = [_width(b, width_mult) for b in base[2:-1]]
    last = _width(base[-1], width_mult)
    first = MBBlock(
        out_channels=first_w,
        kernel=3,
        stride=1,
        expand_ratio=1,
        mid_channels=stem,
        act="relu6",
        use_se=False,
        residual=False,  # ofa_proxyless.py: ResidualBlock(first_block_conv, None)
    )
    rest, ids = _elastic_blocks(
        first_w,
        widths,
        PROXYLESS_STRIDES,
        ["relu6"] * 6,
        [False] * 6,
        [*d, 1],
        ks,
        e,
        [MAX_DEPTH] * N_UNITS + [1],
    )
    spec = NetSpec(
        family="proxyless",
        first_conv=ConvSpec(stem, 3, 2, act="relu6"),
        blocks=(first, *rest),
        final_expand=None,
        feature_mix=ConvSpec(last, 1, 1, act="relu6"),
        classifier=LinearSpec(n_classes, True, dropout),
        bn=(0.1, 1e-3),
    )
    return spec, [0, *ids]


# --------------------------------------------------------------------------------------
# MobileNetV3-Large (OFA's static MobileNetV3Large, width 1.0)
# --------------------------------------------------------------------------------------

# k, mid (exp), out, se, act, stride -- mobile_net_v3.py's cfg (stage "0" has expand 1).
MOBILENET_V3_LARGE_CFG = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "h_swish", 2),
    (3, 200, 80, False, "h_swish", 1),
    (3, 184, 80, False, "h_swish", 1),
    (3, 184, 80, False, "h_swish", 1),
    (3, 480, 112, True, "h_swish", 1),
    (3, 672, 112, True, "h_swish", 1),
    (5, 672, 160, True, "h_swish", 2),
    (5, 960, 160, True, "h_swish", 1),
    (5, 960, 160, True, "h_swish", 1),
)


def mobilenet_v3_large_spec(n_classes: int = 1000, dropout: float = 0.2) -> NetSpec:
    """MobileNetV3-Large 1.0 as OFA builds it (``MobileNetV3Large()``)."""
    feature = 16
    blocks = []
    for i, (k, mid, out, se, act, s) in enumerate(MOBILENET_V3_LARGE_CFG):
        # The first block has expand ratio 1 (no inverted bottleneck); the others give
        # their middle width explicitly and keep expand_ratio None, as OFA does.
        ratio = 1 if i == 0 else None
        blocks.append(MBBlock(out, k, s, ratio, mid, act, se, s == 1 and out == feature))
        feature = out
    return NetSpec(
        family="mbv3",
        first_conv=ConvSpec(16, 3, 2, act="h_swish"),
        blocks=tuple(blocks),
        final_expand=ConvSpec(feature * 6, 1, 1, act="h_swish"),
        feature_mix=ConvSpec(1280, 1, 1, use_bn=False, act="h_swish"),
        classifier=LinearSpec(n_classes, True, dropout),
        bn=(0.1, 1e-5),
    )
