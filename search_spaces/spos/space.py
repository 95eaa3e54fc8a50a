"""Single Path One-Shot's ShuffleNetV2 block space (4^20), with optional channel search."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from nas.search_spaces.spos import network
from nas.search_spaces.spos.ops import BLOCKS

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph
from nas.space import Genotype, SearchSpace

LAYERS = sum(network.REPEATS)
"""Number of choice layers (20)."""

SCALES = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
"""Channel-search width scales of a block's hidden layers (index = option id). The literals
are the ones Megvii multiplies by, so ``int(base * scale)`` rounds the same way."""

DEFAULT_SCALE = SCALES.index(1.0)

_BLOCK_HELP = ", ".join(f"{i} {b}" for i, b in enumerate(BLOCKS))


def _int_tuple(value: object, field: str) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise InvalidGenotype(f"spos: {field} must be a tuple of ints, got {value!r}")
    return value


@dataclass(frozen=True)
class SPOSGenotype(Genotype):
    """One choice block per layer and, optionally, one width scale per layer.

    Attributes:
        blocks: 20 block ids (0 shuffle3x3, 1 shuffle5x5, 2 shuffle7x7, 3 xception).
        scales: 20 indices into :data:`SCALES` (all 1.0 by default).
    """

    blocks: tuple[int, ...]
    scales: tuple[int, ...] = (DEFAULT_SCALE,) * LAYERS
    space_name: ClassVar[str] = "spos"

    def __post_init__(self) -> None:
        blocks = _int_tuple(self.blocks, "blocks")
        scales = _int_tuple(self.scales, "scales")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "scales", scales)
        if len(blocks) != LAYERS:
            raise InvalidGenotype(f"spos: blocks needs {LAYERS} choices, got {len(blocks)}")
        for i, b in enumerate(blocks):
            if not 0 <= b < len(BLOCKS):
                raise InvalidGenotype(
                    f"spos: blocks[{i}] is {b}; expected 0..{len(BLOCKS) - 1} ({_BLOCK_HELP})"
                )
        if len(scales) != LAYERS:
            raise InvalidGenotype(f"spos: scales needs {LAYERS} choices, got {len(scales)}")
        for i, s in enumerate(scales):
            if not 0 <= s < len(SCALES):
                raise InvalidGenotype(
                    f"spos: scales[{i}] is {s}; expected an index 0..{len(SCALES) - 1} "
                    f"into {list(SCALES)}"
                )

    @property
    def scale_values(self) -> tuple[float, ...]:
        return tuple(SCALES[s] for s in self.scales)

    @property
    def default_width(self) -> bool:
        """Whether every layer has width scale 1.0 (no channel search)."""
        return all(s == DEFAULT_SCALE for s in self.scales)

    def to_str(self) -> str:
        text = ",".join(str(b) for b in self.blocks)
        if not self.default_width:
            text += ";" + ",".join(f"{v:.1f}" for v in self.scale_values)
        return text


_PAIR = re.compile(r"[(\[]([(\[].*[)\]]),([(\[].*[)\]])[)\]]")


def _unwrap(part: str) -> str:
    if len(part) >= 2 and part[0] in "([" and part[-1] in ")]":
        return part[1:-1].rstrip(",")
    return part


def parse_spos(text: str, cls: type[SPOSGenotype] | None = None) -> SPOSGenotype:
    """Parse ``2,1,0,...`` (20 block ids), optionally ``;1.0,0.8,...`` (20 width scales).

    Also accepted: the tuple form ``(2, 1, 0, ...)``, 20 digits without separators, and
    ``((2, 1, ...), (1.0, 0.8, ...))`` for blocks with scales. ``cls`` is the genotype class
    (default :class:`SPOSGenotype`).
    """
    s = "".join(str(text).split())
    if not s:
        raise InvalidGenotype("spos: empty architecture; expected 20 comma-separated block ids")
    if ";" in s:
        parts = s.split(";")
    elif m := _PAIR.fullmatch(s):
        parts = [m.group(1), m.group(2)]
    else:
        parts = [s]
    if len(parts) > 2:
        raise InvalidGenotype(f"spos: {text!r} has more than two ';'-separated parts")
    parts = [_unwrap(p) for p in parts]
    body = parts[0]
    if "," not in body and body.isdigit() and len(body) == LAYERS:
        tokens = list(body)
    else:
        tokens = body.split(",")
    if len(tokens) != LAYERS:
        raise InvalidGenotype(
            f"spos: {text!r} has {len(tokens)} block choices; expected {LAYERS} "
            f"comma-separated ids ({_BLOCK_HELP})"
        )
    blocks = []
    for i, tok in enumerate(tokens):
        if not tok.isdigit():
            raise InvalidGenotype(
                f"spos: block choice {i} is {tok!r}; expected an id 0..{len(BLOCKS) - 1}"
            )
        blocks.append(int(tok))
    scales = [DEFAULT_SCALE] * LAYERS
    if len(parts) == 2:
        vals = parts[1].split(",")
        if len(vals) != LAYERS:
            raise InvalidGenotype(f"spos: {text!r} has {len(vals)} width scales; expected {LAYERS}")
        scales = []
        for i, tok in enumerate(vals):
            try:
                v = float(tok)
            except ValueError:
                v = float("nan")
            idx = [j for j, sc in enumerate(SCALES) if abs(sc - v) < 1e-6]
            if not idx:
                raise InvalidGenotype(
                    f"spos: width scale {i} is {tok!r}; expected one of {list(SCALES)}"
                )
            scales.append(idx[0])
    return (cls or SPOSGenotype)(tuple(blocks), tuple(scales))


@dataclass(frozen=True)
class SPOSChannelsGenotype(SPOSGenotype):
    """A genotype of the channel-search space ``spos-channels`` (same fields, its own tag)."""

    space_name: ClassVar[str] = "spos-channels"


KNOWN = {
    # The searched architecture of the Megvii repository (323M FLOPs, 3.5M params, 25.6% top-1 err).
    "SPOS": "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3",
}


class SPOSSpace(SearchSpace):
    """SPOS: 20 ShuffleNetV2 choice layers over 4 blocks; optionally 10 widths per layer.

    Args:
        channel_search: also search each layer's hidden width (scales 0.2..2.0 of half the
            block's output channels); otherwise every genotype of the space has scale 1.0.
    """

    name: ClassVar[str] = "spos"
    description: ClassVar[str] = (
        "Single Path One-Shot ShuffleNetV2 space: 20 layers x 4 blocks (+ optional width search)"
    )
    default_dataset: ClassVar[str] = "imagenet"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)
    supernet: ClassVar[str] = "nas.search_spaces.spos.supernet:SPOSNet"
    genotype_cls: ClassVar[type[SPOSGenotype]] = SPOSGenotype

    def __init__(self, channel_search: bool = False) -> None:
        self.channel_search = bool(channel_search)

    def choices(self) -> list[tuple[str, int]]:
        out = [(f"block_{i}", len(BLOCKS)) for i in range(LAYERS)]
        if self.channel_search:
            out += [(f"scale_{i}", len(SCALES)) for i in range(LAYERS)]
        return out

    def from_indices(self, indices: Sequence[int]) -> SPOSGenotype:
        n = len(self.choices())
        if len(indices) != n:
            raise InvalidGenotype(f"spos: expected {n} choice indices, got {len(indices)}")
        idx = [int(i) for i in indices]
        if self.channel_search:
            return self.genotype_cls(tuple(idx[:LAYERS]), tuple(idx[LAYERS:]))
        return self.genotype_cls(tuple(idx))

    def to_indices(self, genotype: Genotype) -> list[int]:
        if not isinstance(genotype, SPOSGenotype):
            raise InvalidGenotype(f"spos: not an SPOS genotype: {genotype!r}")
        if self.channel_search:
            return list(genotype.blocks) + list(genotype.scales)
        if not genotype.default_width:
            raise InvalidGenotype(
                "spos: this genotype has width scales other than 1.0 but the space searches "
                "blocks only; use SPOSSpace(channel_search=True)"
            )
        return list(genotype.blocks)

    def parse(self, text: str) -> SPOSGenotype:
        return parse_spos(text, self.genotype_cls)

    def known(self) -> Mapping[str, Genotype]:
        return {k: parse_spos(v, self.genotype_cls) for k, v in KNOWN.items()}

    def smallest(self) -> Genotype:
        """The 3x3 ShuffleNet block everywhere (at the narrowest width with channel search)."""
        return self.from_indices([0] * len(self.choices()))

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        if not isinstance(genotype, SPOSGenotype):
            raise InvalidGenotype(f"spos: not an SPOS genotype: {genotype!r}")
        g = network.build(genotype.blocks, genotype.scale_values, network.DATASETS[dataset])
        g.meta.update(space=self.name, arch=genotype.to_str(), dataset=dataset)
        return g


class SPOSChannelSpace(SPOSSpace):
    """``spos-channels``: the SPOS space with channel search (block and hidden width per layer).

    The same as ``SPOSSpace(channel_search=True)`` under its own name, so that the CLI can
    select it and its trained supernet (max-width weights) is saved apart from the
    block-only one.
    """

    name: ClassVar[str] = "spos-channels"
    description: ClassVar[str] = (
        "SPOS with channel search: 20 layers x 4 blocks x 10 hidden widths (scales 0.2-2.0)"
    )
    genotype_cls: ClassVar[type[SPOSGenotype]] = SPOSChannelsGenotype

    def __init__(self) -> None:
        super().__init__(channel_search=True)
