"""The BigNAS search space (Yu et al., "BigNAS: Scaling Up Neural Architecture Search with
Big Single-Stage Models", ECCV 2020, Table 1).

An EfficientNet-like MobileNet: a 3x3 stem conv, seven MBConv stages, a 1x1 head conv, with
per-stage width, depth, kernel and expansion ranges and the input resolution elastic:

========  ==========  =========  ======  =======  =========  ======
stage     channels    layers     kernel  expand   stride     input
========  ==========  =========  ======  =======  =========  ======
stem      32-40       1          3       -        2          192-320
MBConv1   16-24       1-2        3       1        1          96-160
MBConv6   24-32       2-3        3       4-6      2          96-160
MBConv6   40-48       2-3        3, 5    4-6      2          48-80
MBConv6   80-88       2-4        3, 5    4-6      2          24-40
MBConv6   112-128     2-6        3, 5    4-6      1          12-20
MBConv6   192-216     2-6        3, 5    6        2          12-20
MBConv6   320-352     1-2        3, 5    6        1          6-10
head      1280-1408   1          1       -        1          6-10
========  ==========  =========  ======  =======  =========  ======

Channels step by 8, resolutions are 192, 224, 256, 288, 320. Activations are swish, every
MBConv has squeeze-and-excitation (reduction 4). Kernel and expansion are chosen per layer,
width and depth per stage; the first blocks of a stage are kept (elastic depth), the first
channels of a layer (elastic width).

Where this implementation decides what the paper leaves open: the SE module is OFA's
(``relu`` inside, h-sigmoid gate, ``make_divisible(mid // 4, 8)`` channels) so that BigNAS
reuses OFA's elastic primitives and IR layers; middle widths are
``make_divisible(round(in * e), 8)``; the classifier has dropout 0.2 (BigNAS applies dropout
to the largest child only, see ``supernet.py``). Costs follow OFA's convention (conv and
linear weight MACs).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from nas.search_spaces.ofa.network import build
from nas.search_spaces.ofa.supernet import NetLayout, StageLayout, SubnetChoice, choice_spec

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph
from nas.inputs import excerpt, parse_json
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class Stage:
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    expands: tuple[int, ...]
    stride: int


STEM_WIDTHS = (32, 40)
STAGES = (
    Stage((16, 24), (1, 2), (3,), (1,), 1),
    Stage((24, 32), (2, 3), (3,), (4, 5, 6), 2),
    Stage((40, 48), (2, 3), (3, 5), (4, 5, 6), 2),
    Stage((80, 88), (2, 3, 4), (3, 5), (4, 5, 6), 2),
    Stage((112, 120, 128), (2, 3, 4, 5, 6), (3, 5), (4, 5, 6), 1),
    Stage((192, 200, 208, 216), (2, 3, 4, 5, 6), (3, 5), (6,), 2),
    Stage((320, 328, 336, 344, 352), (1, 2), (3, 5), (6,), 1),
)
HEAD_WIDTHS = tuple(range(1280, 1409, 8))
RESOLUTIONS = (192, 224, 256, 288, 320)
N_LAYERS = sum(max(s.depths) for s in STAGES)
# Both at the genotype's resolution (see nas.search_spaces.ofa.network.DATASETS).
DATASETS: dict[str, tuple[tuple[int, int, int] | None, int]] = {
    "imagenet": (None, 1000),
    "digits": (None, 10),
}
DROPOUT = 0.2


def _layer_stage() -> list[int]:
    return [i for i, s in enumerate(STAGES) for _ in range(max(s.depths))]


@dataclass(frozen=True)
class BigNASGenotype(Genotype):
    """A BigNAS child: stem width, per-stage width and depth, per-layer kernel and expansion
    (inactive layers in normal form: smallest kernel and expansion), head width, resolution."""

    stem: int
    w: tuple[int, ...]
    d: tuple[int, ...]
    ks: tuple[int, ...]
    e: tuple[int, ...]
    head: int
    r: int

    space_name: ClassVar[str] = "bignas"

    def __post_init__(self) -> None:
        def one(name: str, v: Any, options: Sequence[int]) -> int:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v not in options:
                raise InvalidGenotype(f"bignas: {name} = {v!r} is not one of {list(options)}")
            return int(v)

        def many(name: str, v: Any, n: int) -> tuple:
            if not isinstance(v, (list, tuple)) or len(v) != n:
                raise InvalidGenotype(f"bignas: {name} must list {n} values, got {v!r}")
            return tuple(v)

        stem = one("stem", self.stem, STEM_WIDTHS)
        w = many("w", self.w, len(STAGES))
        d = many("d", self.d, len(STAGES))
        ks = list(many("ks", self.ks, N_LAYERS))
        e = list(many("e", self.e, N_LAYERS))
        w = tuple(
            one(f"w[{i}]", v, s.widths) for i, (v, s) in enumerate(zip(w, STAGES, strict=True))
        )
        d = tuple(
            one(f"d[{i}]", v, s.depths) for i, (v, s) in enumerate(zip(d, STAGES, strict=True))
        )
        li = 0
        for si, s in enumerate(STAGES):
            for j in range(max(s.depths)):
                ks[li] = one(f"ks[{li}]", ks[li], s.kernels)
                e[li] = one(f"e[{li}]", e[li], s.expands)
                if j >= d[si]:
                    ks[li], e[li] = s.kernels[0], s.expands[0]
                li += 1
        object.__setattr__(self, "stem", stem)
        object.__setattr__(self, "w", w)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "ks", tuple(ks))
        object.__setattr__(self, "e", tuple(e))
        object.__setattr__(self, "head", one("head", self.head, HEAD_WIDTHS))
        object.__setattr__(self, "r", one("r", self.r, RESOLUTIONS))

    @property
    def resolution(self) -> int:
        return self.r

    def active(self) -> list[bool]:
        return [j < d for d, s in zip(self.d, STAGES, strict=True) for j in range(max(s.depths))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stem": self.stem,
            "w": list(self.w),
            "d": list(self.d),
            "ks": list(self.ks),
            "e": list(self.e),
            "head": self.head,
            "r": self.r,
        }

    def to_str(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def choice(self) -> SubnetChoice:
        return SubnetChoice(self.stem, self.w, self.d, self.ks, self.e, self.head)


def layout(n_classes: int = 1000, in_channels: int = 3, dropout: float = DROPOUT) -> NetLayout:
    """The BigNAS supernet at its largest."""
    return NetLayout(
        in_channels=in_channels,
        stem_width=max(STEM_WIDTHS),
        stem_act="swish",
        stages=tuple(
            StageLayout(
                max(s.widths),
                s.stride,
                "swish",
                True,
                max(s.depths),
                s.kernels,
                max(s.expands),
                expands=s.expands,
            )
            for s in STAGES
        ),
        head_width=max(HEAD_WIDTHS),
        head_act="swish",
        feature_mix=0,
        n_classes=n_classes,
        dropout=dropout,
        kernel_transform=False,
        se_acts=("relu", "hsigmoid"),
        bn=(0.1, 1e-5),
    )


class BigNASSpace(SearchSpace):
    """BigNAS (Table 1): elastic width, depth, kernel, expansion and resolution."""

    name: ClassVar[str] = "bignas"
    description: ClassVar[str] = (
        "BigNAS single-stage space: per-stage width/depth, per-layer kernel/expand, resolution"
    )
    default_dataset: ClassVar[str] = "imagenet"
    datasets: ClassVar[tuple[str, ...]] = tuple(DATASETS)
    supernet: ClassVar[str] = "nas.search_spaces.bignas.supernet:BigNASNet"

    # decisions: (name, options); single-option decisions are left out
    def _decisions(self) -> list[tuple[str, tuple[int, ...]]]:
        out: list[tuple[str, tuple[int, ...]]] = [("stem", STEM_WIDTHS)]
        out += [(f"w_{i}", s.widths) for i, s in enumerate(STAGES)]
        out += [(f"d_{i}", s.depths) for i, s in enumerate(STAGES)]
        st = _layer_stage()
        out += [(f"ks_{i}", STAGES[st[i]].kernels) for i in range(N_LAYERS)]
        out += [(f"e_{i}", STAGES[st[i]].expands) for i in range(N_LAYERS)]
        out += [("head", HEAD_WIDTHS), ("r", RESOLUTIONS)]
        return [(n, o) for n, o in out if len(o) > 1]

    def choices(self) -> list[tuple[str, int]]:
        return [(n, len(o)) for n, o in self._decisions()]

    def _values(self, genotype: BigNASGenotype) -> dict[str, int]:
        v = {"stem": genotype.stem, "head": genotype.head, "r": genotype.r}
        for i in range(len(STAGES)):
            v[f"w_{i}"], v[f"d_{i}"] = genotype.w[i], genotype.d[i]
        for i in range(N_LAYERS):
            v[f"ks_{i}"], v[f"e_{i}"] = genotype.ks[i], genotype.e[i]
        return v

    def from_indices(self, indices: Sequence[int]) -> BigNASGenotype:
        dec = self._decisions()
        if len(indices) != len(dec) or any(
            not isinstance(i, (int, np.integer)) or not 0 <= i < len(o)
            for i, (_, o) in zip(indices, dec, strict=True)
        ):
            raise InvalidGenotype(
                f"bignas: expected {len(dec)} option indices within "
                f"{[len(o) for _, o in dec]}, got {list(indices)}"
            )
        v = {n: o[int(i)] for (n, o), i in zip(dec, indices, strict=True)}
        st = _layer_stage()
        return BigNASGenotype(
            stem=v.get("stem", STEM_WIDTHS[0]),
            w=tuple(v.get(f"w_{i}", s.widths[0]) for i, s in enumerate(STAGES)),
            d=tuple(v.get(f"d_{i}", s.depths[0]) for i, s in enumerate(STAGES)),
            ks=tuple(v.get(f"ks_{i}", STAGES[st[i]].kernels[0]) for i in range(N_LAYERS)),
            e=tuple(v.get(f"e_{i}", STAGES[st[i]].expands[0]) for i in range(N_LAYERS)),
            head=v.get("head", HEAD_WIDTHS[0]),
            r=v.get("r", RESOLUTIONS[0]),
        )

    def to_indices(self, genotype: Genotype) -> list[int]:
        g = self._check(genotype)
        v = self._values(g)
        return [o.index(v[n]) for n, o in self._decisions()]

    def _check(self, genotype: Any) -> BigNASGenotype:
        if not isinstance(genotype, BigNASGenotype):
            raise InvalidGenotype(f"bignas: not a bignas genotype: {genotype!r}")
        return genotype

    @property
    def size(self) -> int:
        n = len(STEM_WIDTHS) * len(HEAD_WIDTHS) * len(RESOLUTIONS)
        for s in STAGES:
            per = len(s.kernels) * len(s.expands)
            n *= len(s.widths) * sum(per**d for d in s.depths)
        return n

    def _live(self, g: BigNASGenotype) -> list[int]:
        act = g.active()
        out = []
        for k, (name, _) in enumerate(self._decisions()):
            if name.startswith(("ks_", "e_")) and not act[int(name.split("_")[1])]:
                continue
            out.append(k)
        return out

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> Genotype:
        """Change exactly one decision that exists in the child."""
        g = self._check(genotype)
        idx = self.to_indices(g)
        ch = self.choices()
        i = int(rng.choice(self._live(g)))
        new = int(rng.integers(ch[i][1] - 1))
        idx[i] = new if new < idx[i] else new + 1
        return self.from_indices(idx)

    def parse(self, text: str) -> BigNASGenotype:
        if isinstance(text, Mapping):
            data: Any = dict(text)
        else:
            data = parse_json(
                str(text),
                f"bignas: {excerpt(str(text), 60)} (expected a genotype like "
                '{"stem":32,"w":[...],"d":[...],"ks":[...],"e":[...],"head":1280,"r":224})',
                InvalidGenotype,
            )
        if not isinstance(data, dict):
            raise InvalidGenotype("bignas: a genotype is a JSON object")
        keys = {"stem", "w", "d", "ks", "e", "head", "r"}
        if set(data) != keys:
            raise InvalidGenotype(
                f"bignas: genotype keys must be {sorted(keys)}, got {sorted(data)}"
            )
        return BigNASGenotype(**data)

    def smallest(self) -> Genotype:
        """The minimal subnet: smallest kernel, expand ratio, depth and resolution."""
        return self.known()["min"]

    def known(self) -> Mapping[str, Genotype]:
        """The largest and smallest children (``max`` at 320, ``min`` at 192)."""
        st = _layer_stage()
        return {
            "max": BigNASGenotype(
                max(STEM_WIDTHS),
                tuple(max(s.widths) for s in STAGES),
                tuple(max(s.depths) for s in STAGES),
                tuple(max(STAGES[st[i]].kernels) for i in range(N_LAYERS)),
                tuple(max(STAGES[st[i]].expands) for i in range(N_LAYERS)),
                max(HEAD_WIDTHS),
                max(RESOLUTIONS),
            ),
            "min": BigNASGenotype(
                min(STEM_WIDTHS),
                tuple(min(s.widths) for s in STAGES),
                tuple(min(s.depths) for s in STAGES),
                tuple(min(STAGES[st[i]].kernels) for i in range(N_LAYERS)),
                tuple(min(STAGES[st[i]].expands) for i in range(N_LAYERS)),
                min(HEAD_WIDTHS),
                min(RESOLUTIONS),
            ),
        }

    def layout(self, dataset: str | None = None) -> NetLayout:
        shape, classes = DATASETS[self.check_dataset(dataset)]
        return layout(classes, shape[2] if shape else 3)

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g = self._check(genotype)
        shape, _ = DATASETS[dataset]
        spec, ids = choice_spec(self.layout(dataset), g.choice())
        graph = build(spec, shape or (g.r, g.r, 3), ids)
        graph.meta.update(
            space=self.name, arch=g.to_str(), dataset=dataset, resolution=(shape or (g.r,))[0]
        )
        return graph
