"""Static OFA networks: the 50 published specialised networks and MobileNetV3-Large.

A published network is a ``net.config`` (OFA's layer-by-layer JSON of a ``MobileNetV3`` or
``ProxylessNASNets``) plus the ``image_size`` of its ``run.config``. It is not a point of
the elastic grid in general (resolutions such as 236 or 260, explicit middle widths), so it
gets its own genotype, :class:`OFANetGenotype`, which carries the whole layer list and the
resolution. Its native string is a compact JSON::

    {"family": "mbv3", "r": 236, "bn": [0.1, 1e-05],
     "first_conv": [out, k, stride, bias, use_bn, act],
     "blocks": [[out, k, stride, expand_ratio, mid, act, use_se, residual], ...],
     "final_expand": [...] | null, "feature_mix": [...] | null,
     "classifier": [out_features, bias, dropout]}

``parse`` also accepts a raw ``net.config`` JSON (with an optional ``image_size`` key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.search_spaces.ofa.network import (
    FAMILIES,
    ConvSpec,
    LinearSpec,
    MBBlock,
    NetSpec,
    mobilenet_v3_large_spec,
)
from nas.search_spaces.ofa.ops import ACTIVATIONS

from nas.errors import DataError, InvalidGenotype, UnknownName
from nas.inputs import parse_json, read_json
from nas.paths import DATA_ENV, data_path
from nas.space import Genotype

SPECIALIZED_DIR = "ofa/ofa_specialized"
"""The published networks, under the shared data folder: ``<net_id>/{net.config,run.config}``."""

SPACE_OF_FAMILY = {"mbv3": "ofa", "proxyless": "ofa-proxyless"}
FAMILY_OF_CONFIG = {
    "MobileNetV3": "mbv3",
    "OFAMobileNetV3": "mbv3",
    "ProxylessNASNets": "proxyless",
    "OFAProxylessNASNets": "proxyless",
}

MOBILENET_V3_LARGE = "MobileNetV3-Large"


@dataclass(frozen=True)
class OFANetGenotype(Genotype):
    """A static OFA network (layer by layer) and its input resolution.

    Attributes:
        net: the layers.
        resolution: the input side (``image_size``).
        name: a label (the published net id); not part of equality.
    """

    net: NetSpec
    resolution: int
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.net, NetSpec):
            raise InvalidGenotype(f"ofa: net must be a NetSpec, got {type(self.net).__name__}")
        if self.net.family not in FAMILIES:
            raise InvalidGenotype(f"ofa: family {self.net.family!r} is not one of {list(FAMILIES)}")
        r = self.resolution
        if not isinstance(r, int) or isinstance(r, bool) or r < 32:
            raise InvalidGenotype(f"ofa: resolution must be an int >= 32, got {r!r}")
        _check_net(self.net)

    @property
    def space_name(self) -> str:  # type: ignore[override]
        return SPACE_OF_FAMILY[self.net.family]

    def to_str(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        n = self.net
        return {
            "family": n.family,
            "r": self.resolution,
            "bn": list(n.bn),
            "first_conv": _conv_list(n.first_conv),
            "blocks": [
                [
                    b.out_channels,
                    b.kernel,
                    b.stride,
                    b.expand_ratio,
                    b.mid_channels,
                    b.act,
                    int(b.use_se),
                    int(b.residual),
                ]
                for b in n.blocks
            ],
            "final_expand": _conv_list(n.final_expand),
            "feature_mix": _conv_list(n.feature_mix),
            "classifier": [
                n.classifier.out_features,
                int(n.classifier.bias),
                n.classifier.dropout,
            ],
        }


def _conv_list(c: ConvSpec | None) -> list[Any] | None:
    if c is None:
        return None
    return [c.out_channels, c.kernel, c.stride, int(c.bias), int(c.use_bn), c.act]


def _check_net(n: NetSpec) -> None:
    for what, c in (
        ("first_conv", n.first_conv),
        ("final_expand", n.final_expand),
        ("feature_mix", n.feature_mix),
    ):
        if c is None:
            if what == "first_conv":
                raise InvalidGenotype("ofa: the network needs a first_conv")
            continue
        _pos(c.out_channels, f"{what} out_channels")
        _odd(c.kernel, f"{what} kernel")
        _pos(c.stride, f"{what} stride")
        _act(c.act, what)
    if not n.blocks:
        raise InvalidGenotype("ofa: the network has no blocks")
    feature = n.first_conv.out_channels
    for i, b in enumerate(n.blocks):
        _pos(b.out_channels, f"block {i} out_channels")
        _odd(b.kernel, f"block {i} kernel")
        _pos(b.stride, f"block {i} stride")
        _pos(b.mid_channels, f"block {i} mid_channels")
        _act(b.act, f"block {i}")
        if b.expand_ratio == 1 and b.mid_channels != feature:
            raise InvalidGenotype(
                f"ofa: block {i} has expand ratio 1 (no inverted bottleneck), so mid_channels "
                f"must equal its {feature} input channels, got {b.mid_channels}"
            )
        if b.residual and (b.stride != 1 or b.out_channels != feature):
            raise InvalidGenotype(
                f"ofa: block {i} has an identity shortcut but maps {feature} channels to "
                f"{b.out_channels} with stride {b.stride}"
            )
        feature = b.out_channels
    _pos(n.classifier.out_features, "classifier out_features")
    if not 0 <= n.classifier.dropout < 1:
        raise InvalidGenotype(
            f"ofa: classifier dropout must be in [0, 1), got {n.classifier.dropout}"
        )


def _pos(v: Any, what: str) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise InvalidGenotype(f"ofa: {what} must be a positive int, got {v!r}")


def _odd(v: Any, what: str) -> None:
    _pos(v, what)
    if v % 2 == 0:
        raise InvalidGenotype(f"ofa: {what} must be odd (same padding), got {v}")


def _act(a: Any, what: str) -> None:
    if a not in ACTIVATIONS:
        raise InvalidGenotype(
            f"ofa: {what} has unknown activation {a!r}; expected one of {list(ACTIVATIONS)}"
        )


# --------------------------------------------------------------------------------------
# Reading: compact JSON and OFA's net.config
# --------------------------------------------------------------------------------------


def from_dict(d: Mapping[str, Any], name: str = "") -> OFANetGenotype:
    """The genotype from its compact dict (:meth:`OFANetGenotype.to_dict`)."""
    try:
        conv = _conv_from_list
        net = NetSpec(
            family=str(d["family"]),
            first_conv=conv(d["first_conv"], "first_conv"),  # type: ignore[arg-type]
            blocks=tuple(_block_from_list(b, i) for i, b in enumerate(d["blocks"])),
            final_expand=conv(d.get("final_expand"), "final_expand"),
            feature_mix=conv(d.get("feature_mix"), "feature_mix"),
            classifier=LinearSpec(
                int(d["classifier"][0]), bool(d["classifier"][1]), float(d["classifier"][2])
            ),
            bn=(float(d["bn"][0]), float(d["bn"][1])) if "bn" in d else (0.1, 1e-5),
        )
        return OFANetGenotype(net, d["r"], name)
    except (KeyError, IndexError, TypeError, ValueError) as e:
        if isinstance(e, InvalidGenotype):
            raise
        raise InvalidGenotype(f"ofa: malformed network description: {e!r}") from None


def _conv_from_list(v: Any, what: str) -> ConvSpec | None:
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or len(v) != 6:
        raise InvalidGenotype(f"ofa: {what} must be [out, k, stride, bias, use_bn, act], got {v!r}")
    return ConvSpec(v[0], v[1], v[2], bool(v[3]), bool(v[4]), v[5])


def _block_from_list(v: Any, i: int) -> MBBlock:
    if not isinstance(v, (list, tuple)) or len(v) != 8:
        raise InvalidGenotype(
            f"ofa: block {i} must be [out, k, stride, expand_ratio, mid, act, use_se, residual], "
            f"got {v!r}"
        )
    return MBBlock(v[0], v[1], v[2], _ratio(v[3]), v[4], v[5], bool(v[6]), bool(v[7]))


def _ratio(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise InvalidGenotype(f"ofa: expand ratio must be a positive number, got {v!r}")
    return int(v) if float(v).is_integer() else float(v)


def from_ofa_config(
    config: Mapping[str, Any], resolution: int = 224, name: str = ""
) -> OFANetGenotype:
    """The genotype of an OFA ``net.config`` (``MobileNetV3`` / ``ProxylessNASNets``).

    Raises:
        InvalidGenotype: a layer type or setting this builder does not express (grouped or
            dilated convs, shuffles, non-``weight_bn_act`` orders), or channels that do not chain.
    """
    where = f"ofa net.config{f' {name}' if name else ''}"
    try:
        family = FAMILY_OF_CONFIG.get(config["name"])
        if family is None:
            raise InvalidGenotype(
                f"{where}: network type {config['name']!r} is not one of {list(FAMILY_OF_CONFIG)}"
            )
        bn_cfg = config.get("bn") or {}
        default_eps = 1e-5 if family == "mbv3" else 1e-3
        bn = (float(bn_cfg.get("momentum", 0.1)), float(bn_cfg.get("eps", default_eps)))
        first = _conv_from_config(config["first_conv"], where, "first_conv")
        blocks = []
        feature = config["first_conv"]["out_channels"]
        for i, b in enumerate(config["blocks"]):
            blocks.append(_block_from_config(b, feature, where, i))
            feature = blocks[-1].out_channels
        final = _conv_from_config(config.get("final_expand_layer"), where, "final_expand_layer")
        mix = _conv_from_config(config.get("feature_mix_layer"), where, "feature_mix_layer")
        cls = config["classifier"]
        if cls.get("use_bn") or cls.get("act_func") not in (None, "none"):
            raise InvalidGenotype(
                f"{where}: a classifier with BN or an activation is not supported"
            )
        if cls.get("ops_order", "weight_bn_act") != "weight_bn_act":
            raise InvalidGenotype(f"{where}: classifier ops_order must be weight_bn_act")
        classifier = LinearSpec(
            int(cls["out_features"]), bool(cls.get("bias", True)), float(cls.get("dropout_rate", 0))
        )
        net = NetSpec(family, first, tuple(blocks), final, mix, classifier, bn)  # type: ignore[arg-type]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, InvalidGenotype):
            raise
        raise InvalidGenotype(f"{where}: malformed config: {e!r}") from None
    return OFANetGenotype(net, resolution, name)


def _conv_from_config(c: Mapping[str, Any] | None, where: str, what: str) -> ConvSpec | None:
    if c is None:
        return None
    if c.get("name") != "ConvLayer":
        raise InvalidGenotype(f"{where}: {what} must be a ConvLayer, got {c.get('name')!r}")
    for key, ok in (
        ("groups", 1),
        ("dilation", 1),
        ("has_shuffle", False),
        ("use_se", False),
        ("dropout_rate", 0),
        ("ops_order", "weight_bn_act"),
    ):
        if c.get(key, ok) != ok:
            raise InvalidGenotype(
                f"{where}: {what} has {key}={c[key]!r}; only {key}={ok!r} is supported"
            )
    return ConvSpec(
        int(c["out_channels"]),
        int(c["kernel_size"]),
        int(c.get("stride", 1)),
        bool(c.get("bias", False)),
        bool(c.get("use_bn", True)),
        c.get("act_func"),
    )


def _block_from_config(b: Mapping[str, Any], feature: int, where: str, i: int) -> MBBlock:
    m = b.get("mobile_inverted_conv") or b.get("conv")
    if m is None or m.get("name") not in ("MBInvertedConvLayer", "MBConvLayer"):
        raise InvalidGenotype(f"{where}: block {i} is not an MBConv block: {b.get('name')!r}")
    if m.get("groups") not in (None, 1):
        raise InvalidGenotype(f"{where}: block {i} has grouped 1x1 convs, not supported")
    if m["in_channels"] != feature:
        raise InvalidGenotype(
            f"{where}: block {i} expects {m['in_channels']} input channels, "
            f"the previous layer gives {feature}"
        )
    shortcut = b.get("shortcut")
    if shortcut is not None and shortcut.get("name") != "IdentityLayer":
        raise InvalidGenotype(f"{where}: block {i} shortcut {shortcut.get('name')!r} not supported")
    ratio = _ratio(m.get("expand_ratio"))
    mid = m.get("mid_channels")
    if mid is None:
        if ratio is None:
            raise InvalidGenotype(f"{where}: block {i} gives neither expand_ratio nor mid_channels")
        mid = round(feature * ratio)  # MBConvLayer: round(in_channels * expand_ratio)
    return MBBlock(
        out_channels=int(m["out_channels"]),
        kernel=int(m["kernel_size"]),
        stride=int(m.get("stride", 1)),
        expand_ratio=ratio,
        mid_channels=int(mid),
        act=m.get("act_func", "relu6"),
        use_se=bool(m.get("use_se", False)),
        residual=shortcut is not None,
    )


def parse_net(text: str) -> OFANetGenotype:
    """A static network from its compact JSON or from a ``net.config`` JSON."""
    d = parse_json(text, "ofa: network description", InvalidGenotype)
    if not isinstance(d, dict):
        raise InvalidGenotype("ofa: a network description must be a JSON object")
    if "first_conv" in d and "name" in d:
        r = d.get("image_size", d.get("r", 224))
        return from_ofa_config(d, r)
    return from_dict(d)


# --------------------------------------------------------------------------------------
# The published networks
# --------------------------------------------------------------------------------------


def specialized_root() -> Path:
    return data_path(SPECIALIZED_DIR)


def specialized_ids() -> list[str]:
    """Ids of the published networks found in the data folder (sorted)."""
    root = specialized_root()
    if not root.is_dir():
        raise DataError(
            f"OFA specialised networks not found at {root} (run `nas data fetch ofa-specialized` or set {DATA_ENV})"
        )
    return sorted(p.name for p in root.iterdir() if (p / "net.config").is_file())


def load(path: str | Path, name: str = "") -> OFANetGenotype:
    """A published network from its ``net.config`` or its folder (resolution from the
    sibling ``run.config``'s ``image_size``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "net.config"
    if not p.exists():
        raise DataError(f"OFA network config {p} does not exist")
    config = read_json(p, "OFA network config")
    run = p.parent / "run.config"
    resolution = 224
    if run.is_file():
        try:
            resolution = read_json(run, "OFA run config")["image_size"]
        except (KeyError, TypeError) as e:
            raise DataError(f"{run}: cannot read image_size: {e!r}") from None
    if isinstance(resolution, list):  # run.config may list several sizes; OFA tests the last
        resolution = resolution[-1]
    return from_ofa_config(config, resolution, name or p.parent.name)


def load_specialized(net_id: str) -> OFANetGenotype:
    """A published network by id, e.g. ``flops@595M_top1@80.0_finetune@75`` (OFA's model-zoo
    spelling) or ``flops-595M_top1-80.0_finetune-75`` (the folder name)."""
    folder = net_id.replace("@", "-")
    ids = specialized_ids()
    if folder not in ids:
        raise UnknownName(f"no published OFA network {net_id!r}; known ids: {ids}")
    return load(specialized_root() / folder, folder)


def mobilenet_v3_large() -> OFANetGenotype:
    """MobileNetV3-Large 1.0 at 224 (OFA's ``MobileNetV3Large``), not in the elastic grid."""
    return OFANetGenotype(mobilenet_v3_large_spec(), 224, MOBILENET_V3_LARGE)


_BUDGET = re.compile(r"^flops[-@](\d+)M")


def flops_budget(net_id: str) -> int | None:
    """The MAC budget in millions that a published net's id states (``flops@595M...``)."""
    m = _BUDGET.match(net_id)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------
# Elastic view of a static network
# --------------------------------------------------------------------------------------


def to_elastic(genotype: OFANetGenotype) -> dict[str, Any] | None:
    """OFA's ``{"ks", "e", "d", "r"}`` of a static network read as a subnet of the elastic
    space, or ``None`` when its unit structure does not fit (5 units of 2..4 layers after the
    first block, plus the fixed 1-layer unit for ProxylessNAS).

    Units are split where a block has no shortcut, as OFA's ``grouped_block_index`` does.
    Inactive layers get kernel 3 and expand 3, the elastic genotype's normal form. Whether
    the widths also match a given width multiplier is for the caller to check (compare the
    graphs).
    """
    blocks = genotype.net.blocks[1:]
    units: list[list[MBBlock]] = []
    for b in blocks:
        if not b.residual or not units:
            units.append([])
        units[-1].append(b)
    if genotype.net.family == "proxyless":
        if len(units) != 6 or len(units[-1]) != 1:
            return None
        tail = units.pop()
    else:
        tail = []
    if len(units) != 5 or any(not 2 <= len(u) <= 4 for u in units):
        return None
    ks: list[int] = []
    e: list[Any] = []
    for u in units:
        for j in range(4):
            ks.append(u[j].kernel if j < len(u) else 3)
            e.append(u[j].expand_ratio if j < len(u) else 3)
    for b in tail:
        ks.append(b.kernel)
        e.append(b.expand_ratio)
    return {"ks": ks, "e": e, "d": [len(u) for u in units], "r": genotype.resolution}
