"""NAS-Bench-Macro: 8 searchable layers x 3 candidates (6,561 architectures), tabular."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nas.search_spaces.nbmacro import network
from nas.search_spaces.nbmacro.ops import OPS

from nas.errors import DataError, InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.paths import DATA_ENV, data_path
from nas.space import Genotype, SearchSpace

LAYERS = sum(network.STAGES)
"""Number of searchable layers (8)."""

_HELP = ", ".join(f"{i} {op}" for i, op in enumerate(OPS))


@dataclass(frozen=True)
class NBMacroGenotype(Genotype):
    """One candidate id per searchable layer (0 identity, 1 mb3_k3, 2 mb6_k5)."""

    ops: tuple[int, ...]
    space_name: ClassVar[str] = "nbmacro"

    def __post_init__(self) -> None:
        ops = tuple(self.ops) if isinstance(self.ops, list) else self.ops
        if not isinstance(ops, tuple) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in ops
        ):
            raise InvalidGenotype(f"nbmacro: ops must be a tuple of ints, got {self.ops!r}")
        object.__setattr__(self, "ops", ops)
        if len(ops) != LAYERS:
            raise InvalidGenotype(f"nbmacro: ops needs {LAYERS} layer choices, got {len(ops)}")
        for i, v in enumerate(ops):
            if not 0 <= v < len(OPS):
                raise InvalidGenotype(
                    f"nbmacro: ops[{i}] is {v}; expected 0..{len(OPS) - 1} ({_HELP})"
                )

    def to_str(self) -> str:
        return "".join(str(v) for v in self.ops)

    def canonical(self) -> NBMacroGenotype:
        """The benchmark's representative: identities after a stage's first layer moved last.

        A stride-1 identity computes nothing, so both genotypes are the same network (the
        benchmark trained only the representative and copied its record to the others).
        """
        out: list[int] = []
        pos = 0
        for n in network.STAGES:
            stage = self.ops[pos : pos + n]
            rest = [v for v in stage[1:] if v != 0]
            out += [stage[0], *rest, *[0] * (n - 1 - len(rest))]
            pos += n
        return NBMacroGenotype(tuple(out))


def parse_nbmacro(text: str) -> NBMacroGenotype:
    """Parse the benchmark's 8-character code such as ``01201120``.

    Separators and brackets are ignored, so ``(0, 1, 2, 0, 1, 1, 2, 0)`` is accepted too.
    """
    s = "".join(ch for ch in str(text) if ch not in " \t\n,()[]")
    if len(s) != LAYERS:
        raise InvalidGenotype(
            f"nbmacro: {text!r} has {len(s)} layer choices; expected an {LAYERS}-character code "
            f"of digits ({_HELP}), e.g. '01201120'"
        )
    ops = []
    for i, ch in enumerate(s):
        if ch not in "0123456789"[: len(OPS)]:
            raise InvalidGenotype(
                f"nbmacro: layer {i} of {text!r} is {ch!r}; expected a digit 0..{len(OPS) - 1} "
                f"({_HELP})"
            )
        ops.append(int(ch))
    return NBMacroGenotype(tuple(ops))


TABLE_FILE = "nasbench/nas-bench-macro_cifar10.json"


@functools.cache
def load_table(path: str | None = None) -> Mapping[str, Mapping[str, Any]]:
    """The benchmark file: 8-character code -> {test_acc, mean_acc, std, params, flops}."""
    p = Path(path) if path else data_path(TABLE_FILE)
    if not p.exists():
        raise DataError(
            f"NAS-Bench-Macro table not found at {p} (run `nas data fetch nbmacro` or set {DATA_ENV})"
        )
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"NAS-Bench-Macro table {p} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or len(data) != len(OPS) ** LAYERS:
        raise DataError(
            f"NAS-Bench-Macro table {p} should map {len(OPS) ** LAYERS} architectures, "
            f"found {len(data) if isinstance(data, dict) else type(data).__name__}"
        )
    return data


def load_macro(path: str | None = None) -> list[tuple[NBMacroGenotype, dict[str, Any]]]:
    """Every architecture of the benchmark with its record, sorted by code.

    A record holds ``test_acc`` (three runs, %), ``mean_acc``, ``std``, ``params`` and
    ``flops``; the list and its records are fresh copies.
    """
    table = load_table(path)
    return [
        (parse_nbmacro(code), {k: (list(v) if isinstance(v, list) else v) for k, v in rec.items()})
        for code, rec in sorted(table.items())
    ]


KNOWN = {
    # The best architecture of the table (mean test accuracy 93.127%; 22212202 is the same
    # network and shares its record).
    "best": "22212220",
    "all_identity": "00000000",
    "all_mb3_k3": "11111111",
    "all_mb6_k5": "22222222",
}


class NBMacroSpace(SearchSpace):
    """NAS-Bench-Macro: 8 layers, each identity, MBConv(3, 3x3) or MBConv(6, 5x5)."""

    name: ClassVar[str] = "nbmacro"
    description: ClassVar[str] = (
        "NAS-Bench-Macro MobileNetV2-block macro space (3^8), tabular on CIFAR-10"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)
    supernet: ClassVar[str] = "nas.search_spaces.nbmacro.supernet:MacroNet"

    def choices(self) -> list[tuple[str, int]]:
        return [(f"layer_{i}", len(OPS)) for i in range(LAYERS)]

    def from_indices(self, indices: Sequence[int]) -> NBMacroGenotype:
        if len(indices) != LAYERS:
            raise InvalidGenotype(f"nbmacro: expected {LAYERS} indices, got {list(indices)}")
        return NBMacroGenotype(tuple(int(i) for i in indices))

    def to_indices(self, genotype: Genotype) -> list[int]:
        if not isinstance(genotype, NBMacroGenotype):
            raise InvalidGenotype(f"nbmacro: not a NAS-Bench-Macro genotype: {genotype!r}")
        return list(genotype.ops)

    def parse(self, text: str) -> NBMacroGenotype:
        return parse_nbmacro(text)

    def known(self) -> Mapping[str, Genotype]:
        return {k: parse_nbmacro(v) for k, v in KNOWN.items()}

    def smallest(self) -> Genotype:
        """Identity in every searchable layer (a 1x1 conv where the layer downsamples)."""
        return self.from_indices([0] * LAYERS)

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        if not isinstance(genotype, NBMacroGenotype):
            raise InvalidGenotype(f"nbmacro: not a NAS-Bench-Macro genotype: {genotype!r}")
        g = network.build(genotype.ops, network.DATASETS[dataset])
        g.meta.update(space=self.name, arch=genotype.to_str(), dataset=dataset)
        return g

    def lookup(self, genotype: Genotype, dataset: str) -> dict[str, float]:
        if dataset != "cifar10":
            raise UnknownName(f"nbmacro table has no dataset {dataset!r}; it has only 'cifar10'")
        if not isinstance(genotype, NBMacroGenotype):
            raise InvalidGenotype(f"nbmacro: not a NAS-Bench-Macro genotype: {genotype!r}")
        rec = load_table()[genotype.to_str()]
        return {"accuracy": float(rec["mean_acc"]), "accuracy_std": float(rec["std"])}
