"""Once-for-All layers written as IR nodes.

Each helper mirrors one module of mit-han-lab/once-for-all (``ofa/utils/layers.py`` and
``ofa/utils/pytorch_modules.py``) and uses the module's path in OFA's ``state_dict`` (with
``/`` for ``.``) as the scope of its nodes, so that weights can be matched by name:

- ``ConvLayer`` (``weight_bn_act``): conv (bias optional) -> BatchNorm (optional) -> act.
- ``SEModule``: global average pool -> 1x1 conv with bias (``channels // 4`` rounded by
  :func:`make_divisible`) -> ReLU -> 1x1 conv with bias -> h-sigmoid -> multiply.
- ``MBConvLayer``: [1x1 conv -> BN -> act] (absent when the expand ratio is 1) -> depthwise
  kxk conv -> BN -> act -> [SE] -> 1x1 conv -> BN; ``ResidualBlock`` adds the input when it
  has an identity shortcut.

Every conv of OFA has no bias except the two inside SE; the classifier has one.
"""

from __future__ import annotations

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph

CHANNEL_DIVISIBLE = 8
"""OFA's ``MyNetwork.CHANNEL_DIVISIBLE``."""

SE_REDUCTION = 4
"""OFA's ``SEModule.REDUCTION``."""

ACTIVATIONS: dict[str | None, str | None] = {
    "relu": "relu",
    "relu6": "relu6",
    "h_swish": "hswish",
    "h_sigmoid": "hsigmoid",
    "sigmoid": "sigmoid",
    "swish": "swish",
    "tanh": "tanh",
    None: None,
    "none": None,
}
"""OFA activation names (``build_activation``) -> IR op (``None``: no activation)."""


def make_divisible(v: float, divisor: int = CHANNEL_DIVISIBLE, min_val: int | None = None) -> int:
    """The nearest multiple of ``divisor`` to ``v``, never more than 10% below ``v``.

    The TensorFlow MobileNet rule that OFA uses for every width.

    >>> make_divisible(16 * 1.2), make_divisible(18), make_divisible(72 // 4)
    (24, 24, 24)
    """
    if min_val is None:
        min_val = divisor
    new_v = max(min_val, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def activation(g: ArchGraph, x: int, act: str | None, scope: str) -> int:
    """Apply an OFA activation by name (``None`` or ``"none"``: pass through)."""
    if act not in ACTIVATIONS:
        raise InvalidGenotype(
            f"ofa: unknown activation {act!r}; expected one of {list(ACTIVATIONS)}"
        )
    op = ACTIVATIONS[act]
    return x if op is None else g.add(op, [x], scope=scope)


def conv_layer(
    g: ArchGraph,
    x: int,
    out_channels: int,
    kernel: int,
    stride: int,
    scope: str,
    *,
    bias: bool = False,
    use_bn: bool = True,
    act: str | None = "relu",
    bn: tuple[float, float] = (0.1, 1e-5),
) -> int:
    """OFA's ``ConvLayer`` with ``ops_order="weight_bn_act"`` and "same" padding."""
    x = g.add(
        "conv",
        [x],
        scope=f"{scope}/conv",
        out_channels=out_channels,
        kernel=kernel,
        stride=stride,
        padding=kernel // 2,
        bias=bias,
    )
    if use_bn:
        x = g.add("batch_norm", [x], scope=f"{scope}/bn", momentum=bn[0], eps=bn[1])
    return activation(g, x, act, f"{scope}/act")


def se_module(g: ArchGraph, x: int, channels: int, scope: str) -> int:
    """OFA's ``SEModule(channels)`` (reduction 4, h-sigmoid gate) applied to ``x``."""
    mid = make_divisible(channels // SE_REDUCTION)
    y = g.add("global_pool", [x], scope=scope, keepdims=True)
    y = g.add("conv", [y], scope=f"{scope}/fc/reduce", out_channels=mid, kernel=1, bias=True)
    y = g.add("relu", [y], scope=f"{scope}/fc/relu")
    y = g.add("conv", [y], scope=f"{scope}/fc/expand", out_channels=channels, kernel=1, bias=True)
    y = g.add("hsigmoid", [y], scope=f"{scope}/fc/h_sigmoid")
    return g.add("mul", [x, y], scope=scope)


def mb_block(
    g: ArchGraph,
    x: int,
    *,
    out_channels: int,
    kernel: int,
    stride: int,
    mid_channels: int,
    expand: bool,
    act: str | None,
    use_se: bool,
    residual: bool,
    scope: str,
    bn: tuple[float, float] = (0.1, 1e-5),
) -> int:
    """OFA's ``ResidualBlock(MBConvLayer(...), IdentityLayer or None)``.

    Args:
        expand: whether the 1x1 inverted bottleneck exists (OFA drops it for expand ratio 1,
            and then ``mid_channels`` must equal the input channels).
        residual: add the block input (an identity shortcut) to the output.
    """
    inp = x
    conv = f"{scope}/conv"
    if expand:
        x = conv_layer(g, x, mid_channels, 1, 1, f"{conv}/inverted_bottleneck", act=act, bn=bn)
    x = g.add(
        "conv",
        [x],
        scope=f"{conv}/depth_conv/conv",
        out_channels=mid_channels,
        kernel=kernel,
        stride=stride,
        padding=kernel // 2,
        groups=mid_channels,
    )
    x = g.add("batch_norm", [x], scope=f"{conv}/depth_conv/bn", momentum=bn[0], eps=bn[1])
    x = activation(g, x, act, f"{conv}/depth_conv/act")
    if use_se:
        x = se_module(g, x, mid_channels, f"{conv}/depth_conv/se")
    x = conv_layer(g, x, out_channels, 1, 1, f"{conv}/point_linear", act=None, bn=bn)
    if residual:
        x = g.add("add", [x, inp], scope=scope)
    return x
