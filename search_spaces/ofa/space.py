"""The Once-for-All elastic spaces: OFA-MobileNetV3 (``ofa``) and OFA-ProxylessNAS
(``ofa-proxyless``).

A genotype is OFA's subnet setting plus the input resolution: a kernel size per layer
(``ks``, from {3, 5, 7}), an expand ratio per layer (``e``, from {3, 4, 6}), a depth per
elastic unit (``d``, from {2, 3, 4}) and ``r`` from 128..224 in steps of 4. Its native
string is compact JSON, ``{"ks":[...],"e":[...],"d":[...],"r":224}``; OFA's own dict style
(``{'ks': [...], 'e': [...], 'd': [...]}``, scalars broadcast, ``image_size`` or a one-element
``r`` list, no ``r`` meaning 224) parses too.

- ``ofa``: 5 units x 4 layers = 20 entries of ``ks`` and ``e``; width multiplier 1.0 or 1.2.
- ``ofa-proxyless``: 5 elastic units (20 layers) plus OFA's sixth unit of one layer (its
  depth is fixed at 1, its kernel and expand ratio are elastic): 21 entries of ``ks`` and
  ``e``, 5 of ``d`` (OFA's six-entry ``d``, whose last entry OFA clamps to 1, parses too);
  width multiplier 1.3 (OFA's published supernet, the default) or 1.0.

Normal form: a layer beyond its unit's depth does not exist in the subnet, so its ``ks`` and
``e`` entries are set to the smallest choice (3 and 3) on construction. Two settings that
select the same subnet are then equal, hash alike and encode alike, and ``mutate`` /
``neighbours`` only change decisions that exist in the subnet.

Beyond the grid, ``resolve`` also accepts ``MobileNetV3-Large`` (``ofa``), a published
specialised network by id (``flops@595M_top1@80.0_finetune@75``) and a path to a
``net.config`` or its folder; these give an
:class:`~nas.search_spaces.ofa.specialized.OFANetGenotype`, which ``to_graph`` builds as well.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from nas.search_spaces.ofa import network, specialized
from nas.search_spaces.ofa.network import D_CHOICES, E_CHOICES, KS_CHOICES, MAX_DEPTH, N_UNITS
from nas.search_spaces.ofa.specialized import OFANetGenotype

from nas.errors import ConfigError, DataError, InvalidGenotype
from nas.graph import ArchGraph
from nas.inputs import kind, parse_json
from nas.space import Genotype, SearchSpace

RESOLUTIONS = tuple(range(128, 225, 4))
"""OFA's input sizes: 128, 132, ..., 224."""

DEFAULT_RESOLUTION = 224


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


@dataclass(frozen=True)
class ElasticGenotype(Genotype):
    """A subnet of an OFA elastic space (see the module docstring for the normal form).

    Attributes:
        ks: kernel size per layer.
        e: expand ratio per layer.
        d: depth per elastic unit.
        resolution: input side (``r`` in the native string).
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    resolution: int = DEFAULT_RESOLUTION

    n_layers: ClassVar[int] = N_UNITS * MAX_DEPTH

    def __post_init__(self) -> None:
        sn = self.space_name
        ks = self._ints("ks", self.ks, self.n_layers, KS_CHOICES)
        e = self._ints("e", self.e, self.n_layers, E_CHOICES)
        d = self._ints("d", self.d, N_UNITS, D_CHOICES)
        r = _int(self.resolution)
        if r not in RESOLUTIONS:
            raise InvalidGenotype(
                f"{sn}: resolution r={self.resolution!r} is not on OFA's grid 128, 132, ..., 224"
            )
        ks, e = list(ks), list(e)
        for u, depth in enumerate(d):
            for j in range(depth, MAX_DEPTH):
                ks[u * MAX_DEPTH + j] = KS_CHOICES[0]
                e[u * MAX_DEPTH + j] = E_CHOICES[0]
        object.__setattr__(self, "ks", tuple(ks))
        object.__setattr__(self, "e", tuple(e))
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "resolution", r)

    def _ints(self, key: str, values: Any, n: int, choices: Sequence[int]) -> tuple[int, ...]:
        sn = self.space_name
        if not isinstance(values, (list, tuple)) or len(values) != n:
            raise InvalidGenotype(f"{sn}: {key} must list {n} values, got {values!r}")
        out = []
        for i, v in enumerate(values):
            iv = _int(v)
            if iv not in choices:
                raise InvalidGenotype(f"{sn}: {key}[{i}] = {v!r} is not one of {list(choices)}")
            out.append(iv)
        return tuple(out)

    def active(self) -> list[bool]:
        """Whether each of the ``n_layers`` layers exists in the subnet."""
        out = [j < depth for depth in self.d for j in range(MAX_DEPTH)]
        return out + [True] * (self.n_layers - len(out))

    def to_dict(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.resolution}

    def to_str(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def to_ofa(self) -> dict[str, Any]:
        """The arguments of OFA's ``set_active_subnet(ks=, e=, d=)`` and ``image_size``."""
        return {
            "ks": list(self.ks),
            "e": list(self.e),
            "d": list(self.d),
            "image_size": self.resolution,
        }


@dataclass(frozen=True)
class OFAGenotype(ElasticGenotype):
    """A subnet of OFA-MobileNetV3: 20 ``ks``, 20 ``e``, 5 ``d`` and the resolution."""

    space_name: ClassVar[str] = "ofa"


@dataclass(frozen=True)
class OFAProxylessGenotype(ElasticGenotype):
    """A subnet of OFA-ProxylessNAS: 21 ``ks``, 21 ``e`` (the last for the fixed one-layer
    sixth unit), 5 ``d`` and the resolution."""

    space_name: ClassVar[str] = "ofa-proxyless"
    n_layers: ClassVar[int] = N_UNITS * MAX_DEPTH + 1

    def to_ofa(self) -> dict[str, Any]:
        out = super().to_ofa()
        out["d"] = out["d"] + [1]
        return out


def parse_elastic(text: str | Mapping[str, Any], cls: type[ElasticGenotype]) -> ElasticGenotype:
    """An elastic genotype from compact JSON, OFA's Python-dict text, or a mapping."""
    sn = cls.space_name
    data: Any = dict(text) if isinstance(text, Mapping) else text
    if isinstance(data, str):
        data = _load_dict(data, sn)
    if not isinstance(data, dict):
        raise InvalidGenotype(f"{sn}: a genotype is a JSON object with ks, e, d and r")
    data = dict(data)
    if data.get("wid") is None:
        data.pop("wid", None)
    r = DEFAULT_RESOLUTION
    keys = [k for k in ("r", "image_size", "resolution") if k in data]
    if len(keys) > 1:
        raise InvalidGenotype(f"{sn}: give the resolution once, got keys {keys}")
    if keys:
        r = data.pop(keys[0])
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                raise InvalidGenotype(f"{sn}: resolution must be one value, got {r!r}")
            r = r[0]
    missing = [k for k in ("ks", "e", "d") if k not in data]
    if missing:
        raise InvalidGenotype(f"{sn}: genotype lacks {missing}; expected keys ks, e, d and r")
    unknown = sorted(set(data) - {"ks", "e", "d"})
    if unknown:
        raise InvalidGenotype(f"{sn}: unknown genotype keys {unknown}; expected ks, e, d and r")
    ks = _broadcast(data["ks"], cls.n_layers)
    e = _broadcast(data["e"], cls.n_layers)
    d = _broadcast(data["d"], N_UNITS)
    if cls is OFAProxylessGenotype and isinstance(d, list) and len(d) == N_UNITS + 1:
        # OFA's d for ProxylessNAS has six entries; the last unit has one layer, and OFA
        # clamps its depth to 1 (set_active_subnet: min(len(group), d)).
        if _int(d[-1]) not in (1, *D_CHOICES):
            raise InvalidGenotype(f"{sn}: d[5] = {d[-1]!r} must be 1 (the fixed last unit)")
        d = d[:-1]
    return cls(ks, e, d, r)  # type: ignore[arg-type]


def _broadcast(v: Any, n: int) -> Any:
    """OFA's ``val2list``: a scalar stands for every entry."""
    return [v] * n if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _load_dict(text: str, sn: str) -> Any:
    text = text.strip()
    try:
        return parse_json(text, f"{sn}: the genotype", InvalidGenotype)
    except InvalidGenotype:
        pass  # Python literal syntax, e.g. {'ks': [3, 5], ...}
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise InvalidGenotype(
            f"{sn}: {text[:80]!r} is neither a genotype like "
            '{"ks":[...],"e":[...],"d":[...],"r":224} nor a known name '
            "(MobileNetV3-Large, a published net id, a net.config path)"
        ) from None


class _OFASpace(SearchSpace):
    """What both OFA elastic spaces share."""

    family: ClassVar[str] = ""
    genotype_cls: ClassVar[type[ElasticGenotype]] = ElasticGenotype
    widths: ClassVar[tuple[float, ...]] = ()
    default_dataset: ClassVar[str] = "imagenet"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)

    def __init__(self, width_mult: float | None = None, dropout: float = 0.1) -> None:
        width_mult = self.widths[0] if width_mult is None else float(width_mult)
        if width_mult not in self.widths:
            raise ConfigError(
                f"{self.name}: width multiplier {width_mult} is not one of {list(self.widths)}"
            )
        if not 0 <= dropout < 1:
            raise ConfigError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        self.width_mult = width_mult
        self.dropout = float(dropout)

    # ------------------------------------------------------------------ decisions

    def choices(self) -> list[tuple[str, int]]:
        n = self.genotype_cls.n_layers
        return (
            [(f"ks_{i}", len(KS_CHOICES)) for i in range(n)]
            + [(f"e_{i}", len(E_CHOICES)) for i in range(n)]
            + [(f"d_{u}", len(D_CHOICES)) for u in range(N_UNITS)]
            + [("r", len(RESOLUTIONS))]
        )

    def from_indices(self, indices: Sequence[int]) -> ElasticGenotype:
        ch = self.choices()
        idx = [_int(i) for i in indices]
        if len(idx) != len(ch) or any(
            i is None or not 0 <= i < m for i, (_, m) in zip(idx, ch, strict=True)
        ):
            raise InvalidGenotype(
                f"{self.name}: expected {len(ch)} option indices within {[m for _, m in ch]}, "
                f"got {list(indices)}"
            )
        n = self.genotype_cls.n_layers
        return self.genotype_cls(
            tuple(KS_CHOICES[i] for i in idx[:n]),  # type: ignore[index]
            tuple(E_CHOICES[i] for i in idx[n : 2 * n]),  # type: ignore[index]
            tuple(D_CHOICES[i] for i in idx[2 * n : 2 * n + N_UNITS]),  # type: ignore[index]
            RESOLUTIONS[idx[-1]],  # type: ignore[index]
        )

    def to_indices(self, genotype: Genotype) -> list[int]:
        g = self._elastic(genotype)
        return (
            [KS_CHOICES.index(k) for k in g.ks]
            + [E_CHOICES.index(x) for x in g.e]
            + [D_CHOICES.index(x) for x in g.d]
            + [RESOLUTIONS.index(g.resolution)]
        )

    def _elastic(self, genotype: Any) -> ElasticGenotype:
        if isinstance(genotype, OFANetGenotype):
            raise InvalidGenotype(
                f"{self.name}: {genotype.name or 'this network'} is a static network, not a "
                "point of the elastic grid (specialized.to_elastic reads it as one if it fits)"
            )
        if not isinstance(genotype, self.genotype_cls):
            raise InvalidGenotype(f"{self.name}: not an {self.name} genotype: {genotype!r}")
        return genotype

    @property
    def size(self) -> int:
        """Distinct subnets x resolutions (inactive layers do not count): about 5.4e20 for
        ``ofa`` (OFA's "more than 10^19" subnets times 25 resolutions)."""
        per_layer = len(KS_CHOICES) * len(E_CHOICES)
        per_unit = sum(per_layer**depth for depth in D_CHOICES)
        extra = self.genotype_cls.n_layers - N_UNITS * MAX_DEPTH
        return per_unit**N_UNITS * per_layer**extra * len(RESOLUTIONS)

    def _live(self, genotype: ElasticGenotype) -> list[int]:
        """Decision indices that exist in the subnet (no inactive ks/e)."""
        n = self.genotype_cls.n_layers
        act = genotype.active()
        live = [i for i in range(n) if act[i]] + [n + i for i in range(n) if act[i]]
        return live + list(range(2 * n, len(self.choices())))

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> Genotype:
        """A genotype that differs in exactly one decision that exists in the subnet."""
        g = self._elastic(genotype)
        idx = self.to_indices(g)
        ch = self.choices()
        i = int(rng.choice(self._live(g)))
        new = int(rng.integers(ch[i][1] - 1))
        idx[i] = new if new < idx[i] else new + 1
        return self.from_indices(idx)

    def neighbours(self, genotype: Genotype) -> list[Genotype]:
        """Every genotype that differs in one decision that exists in the subnet."""
        g = self._elastic(genotype)
        idx = self.to_indices(g)
        out: list[Genotype] = []
        for i in self._live(g):
            for v in range(self.choices()[i][1]):
                if v != idx[i]:
                    new = list(idx)
                    new[i] = v
                    out.append(self.from_indices(new))
        return out

    # ------------------------------------------------------------------ text

    def parse(self, text: str) -> Genotype:
        """An elastic genotype, or a static network (compact JSON with ``blocks`` or an OFA
        ``net.config`` JSON)."""
        data = _load_dict(text, self.name) if isinstance(text, str) else text
        if isinstance(data, dict) and ("blocks" in data or "first_conv" in data):
            return self._check_family(specialized.parse_net(json.dumps(data)))
        return parse_elastic(data, self.genotype_cls)

    def _check_family(self, g: OFANetGenotype) -> OFANetGenotype:
        if g.net.family != self.family:
            raise InvalidGenotype(
                f"{self.name}: {g.name or 'this network'} is an {g.net.family} network; "
                f"use the {specialized.SPACE_OF_FAMILY[g.net.family]!r} space"
            )
        return g

    def smallest(self) -> Genotype:
        """The minimal subnet (OFA's ``min``: smallest kernel, expand ratio and depth) at the
        smallest resolution of the grid."""
        idx = self.to_indices(self.known()["min"])
        idx[-1] = 0  # resolution 128
        return self.from_indices(idx)

    def known(self) -> Mapping[str, Genotype]:
        """The largest and smallest subnets at 224 (``max``, ``min``)."""
        n = self.genotype_cls.n_layers
        return {
            "max": self.genotype_cls((7,) * n, (6,) * n, (4,) * N_UNITS, 224),
            "min": self.genotype_cls((3,) * n, (3,) * n, (2,) * N_UNITS, 224),
        }

    def published(self) -> dict[str, OFANetGenotype]:
        """The published specialised networks of this family, by folder id."""
        out = {}
        for net_id in specialized.specialized_ids():
            g = specialized.load_specialized(net_id)
            if g.net.family == self.family:
                out[net_id] = g
        return out

    def elastic_of(self, genotype: OFANetGenotype) -> ElasticGenotype | None:
        """The elastic genotype of this space (at its width multiplier) that builds the same
        graph as a static network, or ``None`` when there is none (another width, a
        resolution off the grid, a layer the space cannot express)."""
        el = specialized.to_elastic(self._check_family(genotype))
        if el is None:
            return None
        try:
            cand = parse_elastic(el, self.genotype_cls)
        except InvalidGenotype:
            return None
        same = self.to_graph(cand).canonical_hash() == self.to_graph(genotype).canonical_hash()
        return cand if same else None

    def resolve(self, arch: str) -> Genotype:
        """Also accepts a ``net.config`` path or its folder, a published net id and (for
        ``ofa``) ``MobileNetV3-Large``."""
        a = arch.strip()
        if a in self.known():
            return self.known()[a]
        if a.lower() == specialized.MOBILENET_V3_LARGE.lower():
            return self._check_family(specialized.mobilenet_v3_large())
        if not a.startswith(("{", "[")):
            p = Path(a)
            if p.name == "net.config" or (kind(p) == "dir" and kind(p / "net.config") == "file"):
                return self._check_family(specialized.load(p))
            if re.fullmatch(r"[\w.@-]+", a) and not a.endswith(".json"):
                try:
                    ids = specialized.specialized_ids()
                except DataError:
                    ids = []
                if a.replace("@", "-") in ids:
                    return self._check_family(specialized.load_specialized(a))
        return super().resolve(a)

    # ------------------------------------------------------------------ network

    def net_spec(
        self, genotype: Genotype, n_classes: int = 1000
    ) -> tuple[network.NetSpec, list[int] | None]:
        """The layer-by-layer network and its blocks' supernet indices."""
        if isinstance(genotype, OFANetGenotype):
            self._check_family(genotype)
            return genotype.net.with_classes(n_classes), None
        g = self._elastic(genotype)
        build = (
            network.mbv3_elastic_spec if self.family == "mbv3" else network.proxyless_elastic_spec
        )
        return build(g.ks, g.e, g.d, self.width_mult, n_classes, self.dropout)

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        shape, classes = network.DATASETS[dataset]
        spec, ids = self.net_spec(genotype, classes)
        r = genotype.resolution  # type: ignore[attr-defined]
        g = network.build(spec, shape or (r, r, 3), ids)
        g.meta.update(
            space=self.name,
            arch=genotype.to_str(),
            dataset=dataset,
            resolution=(shape or (r,))[0],
        )
        if isinstance(genotype, OFANetGenotype):
            g.meta.update(net=genotype.name)
        else:
            g.meta.update(width_mult=self.width_mult)
        return g


class OFASpace(_OFASpace):
    """OFA-MobileNetV3 (``ofa_mbv3.py``): kernel {3,5,7}, expand {3,4,6}, depth {2,3,4}.

    Args:
        width_mult: 1.0 (default) or 1.2 (the published ``ofa_mbv3_d234_e346_k357_w1.2``).
        dropout: classifier dropout rate (OFA's default 0.1; no effect on counts).
    """

    name: ClassVar[str] = "ofa"
    description: ClassVar[str] = (
        "Once-for-All MobileNetV3 space: per-layer kernel/expand, per-unit depth, resolution"
    )
    family: ClassVar[str] = "mbv3"
    genotype_cls: ClassVar[type[ElasticGenotype]] = OFAGenotype
    widths: ClassVar[tuple[float, ...]] = (1.0, 1.2)
    supernet: ClassVar[str] = "nas.search_spaces.ofa.elastic:OFANet"


class OFAProxylessSpace(_OFASpace):
    """OFA-ProxylessNAS (``ofa_proxyless.py``): kernel {3,5,7}, expand {3,4,6}, depth {2,3,4}.

    Args:
        width_mult: 1.3 (default, the published ``ofa_proxyless_d234_e346_k357_w1.3``) or 1.0.
        dropout: classifier dropout rate (no effect on counts).
    """

    name: ClassVar[str] = "ofa-proxyless"
    description: ClassVar[str] = (
        "Once-for-All ProxylessNAS space: per-layer kernel/expand, per-unit depth, resolution"
    )
    family: ClassVar[str] = "proxyless"
    genotype_cls: ClassVar[type[ElasticGenotype]] = OFAProxylessGenotype
    widths: ClassVar[tuple[float, ...]] = (1.3, 1.0)
    supernet: ClassVar[str] = "nas.search_spaces.ofa.proxyless:OFAProxylessNet"
