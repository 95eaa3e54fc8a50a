"""The NAS-Bench-201 cell search space (15,625 cells)."""

from __future__ import annotations

import csv
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nas.search_spaces.nb201 import network
from nas.search_spaces.nb201.ops import OPS

from nas.errors import DataError, InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.paths import DATA_ENV, data_path
from nas.space import Genotype, SearchSpace


@dataclass(frozen=True)
class NB201Genotype(Genotype):
    """Six edge operations in NB201 string order: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2."""

    ops: tuple[str, ...]
    space_name: ClassVar[str] = "nb201"

    def __post_init__(self) -> None:
        if not isinstance(self.ops, tuple) or len(self.ops) != 6:
            raise InvalidGenotype(f"nb201: a cell has 6 edge ops, got {self.ops!r}")
        for i, op in enumerate(self.ops):
            if op not in OPS:
                raise InvalidGenotype(
                    f"nb201: edge {i} has unknown op {op!r}; expected one of {list(OPS)}"
                )

    def to_str(self) -> str:
        o = self.ops
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def parse_nb201(text: str) -> NB201Genotype:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    text = text.strip()
    nodes = text.split("+")
    if len(nodes) != 3:
        raise InvalidGenotype(
            f"nb201: {text!r} is not in NB201 notation |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
        )
    ops: list[str] = []
    for to, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise InvalidGenotype(f"nb201: node {to} of {text!r} must be wrapped in '|'")
        edges = node[1:-1].split("|")
        if len(edges) != to:
            raise InvalidGenotype(
                f"nb201: node {to} of {text!r} needs {to} inputs, got {len(edges)}"
            )
        for frm, edge in enumerate(edges):
            op, sep, src = edge.partition("~")
            if not sep or src != str(frm):
                raise InvalidGenotype(
                    f"nb201: edge {edge!r} of node {to} must read 'op~{frm}' in {text!r}"
                )
            ops.append(op)
    return NB201Genotype(tuple(ops))


TABLE_FILE = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"
TABLE_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}


@functools.cache
def load_table(path: str | None = None) -> dict[str, dict[str, float | str]]:
    """The NATS-Bench topology table: arch string -> test accuracies (200 epochs)."""
    p = Path(path) if path else data_path(TABLE_FILE)
    if not p.exists():
        raise DataError(
            f"NAS-Bench-201 table not found at {p} (run `nas data fetch nb201` or set {DATA_ENV})"
        )
    out: dict[str, dict[str, float | str]] = {}
    with p.open() as f:
        for row in csv.DictReader(f):
            rec: dict[str, float | str] = {d: float(row[c]) for d, c in TABLE_COLUMNS.items()}
            rec["unique"] = row["UniqueString"]
            out[row["ArchitectureString"]] = rec
    return out


KNOWN = {
    # The best CIFAR-10 cell of the table (94.37% test accuracy).
    "best_cifar10": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
    "all_conv3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "resnet": "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|",
}


class NB201Space(SearchSpace):
    """NAS-Bench-201: a 4-node cell, 6 edges, 5 operations per edge.

    Args:
        channels: width of the first stage (default 16 as in the benchmark; 8 on digits).
        cells_per_stage: cells per stage (default 5 as in the benchmark; 1 on digits).
    """

    name: ClassVar[str] = "nb201"
    description: ClassVar[str] = (
        "NAS-Bench-201 cell space (5 ops on 6 edges), tabular on 3 datasets"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)

    def __init__(self, channels: int | None = None, cells_per_stage: int | None = None) -> None:
        self.channels = channels
        self.cells_per_stage = cells_per_stage

    def skeleton(self, dataset: str) -> tuple[int, int]:
        """(channels, cells per stage): the benchmark's 16 and 5, or 8 and 1 for digits."""
        c, n = (8, 1) if dataset == "digits" else (16, 5)
        return (self.channels or c, self.cells_per_stage or n)

    def choices(self) -> list[tuple[str, int]]:
        return [(f"edge_{t}_{f}", len(OPS)) for t, f in network.EDGES]

    def from_indices(self, indices: Sequence[int]) -> NB201Genotype:
        if len(indices) != 6 or not all(0 <= int(i) < len(OPS) for i in indices):
            raise InvalidGenotype(f"nb201: expected 6 op indices in 0..4, got {list(indices)}")
        return NB201Genotype(tuple(OPS[int(i)] for i in indices))

    def to_indices(self, genotype: Genotype) -> list[int]:
        if not isinstance(genotype, NB201Genotype):
            raise InvalidGenotype(f"nb201: not an NB201 genotype: {genotype!r}")
        return [OPS.index(op) for op in genotype.ops]

    def parse(self, text: str) -> NB201Genotype:
        return parse_nb201(text)

    def known(self) -> Mapping[str, Genotype]:
        return {k: parse_nb201(v) for k, v in KNOWN.items()}

    def smallest(self) -> Genotype:
        """Every edge ``none``: no cell operation costs anything (7.78M FLOPs on CIFAR-10)."""
        return self.from_indices([OPS.index("none")] * len(network.EDGES))

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        if not isinstance(genotype, NB201Genotype):
            raise InvalidGenotype(f"nb201: not an NB201 genotype: {genotype!r}")
        shape, classes = network.DATASETS[dataset]
        channels, cells = self.skeleton(dataset)
        g = network.build(genotype.ops, shape, classes, channels, cells)
        g.meta.update(
            space=self.name,
            arch=genotype.to_str(),
            dataset=dataset,
            channels=channels,
            cells_per_stage=cells,
        )
        return g

    def lookup(self, genotype: Genotype, dataset: str) -> dict[str, float]:
        if dataset not in TABLE_COLUMNS:
            raise UnknownName(
                f"nb201 table has no dataset {dataset!r}; choose one of {list(TABLE_COLUMNS)}"
            )
        rec = load_table()[genotype.to_str()]
        return {"accuracy": float(rec[dataset])}
