"""The DARTS cell search space and the NAS-Bench-301 benchmark over it.

Decisions (``choices``), for the normal then the reduction cell, for each intermediate node
``n = 2..5``: its first input (``n`` options: nodes ``0..n-1``), its second input (``n - 1``
options: the remaining nodes, in order), the first op and the second op (7 options each,
:data:`~nas.search_spaces.darts.genotypes.CELL_OPS`). The encoding keeps the order of the pairs, so
``from_indices(to_indices(g)) == g``; two genotypes that only swap the pairs of a node describe
the same network (see :meth:`DartsGenotype.canonical`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nas.search_spaces.darts import network
from nas.search_spaces.darts.genotypes import (
    CELL_OPS,
    KNOWN,
    STEPS,
    DartsGenotype,
    parse_darts,
)

from nas.errors import DataError, InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.paths import DATA_ENV, data_path
from nas.space import Genotype, SearchSpace


def _cell_choices(prefix: str) -> list[tuple[str, int]]:
    out = []
    for i in range(STEPS):
        n = i + 2
        out += [
            (f"{prefix}_node{n}_input0", n),
            (f"{prefix}_node{n}_input1", n - 1),
            (f"{prefix}_node{n}_op0", len(CELL_OPS)),
            (f"{prefix}_node{n}_op1", len(CELL_OPS)),
        ]
    return out


def _cell_from_indices(idx: Sequence[int]) -> tuple[tuple[str, int], ...]:
    pairs: list[tuple[str, int]] = []
    for i in range(STEPS):
        a, b, o0, o1 = (int(v) for v in idx[4 * i : 4 * i + 4])
        others = [j for j in range(i + 2) if j != a]
        pairs += [(CELL_OPS[o0], a), (CELL_OPS[o1], others[b])]
    return tuple(pairs)


def _cell_to_indices(pairs: Sequence[tuple[str, int]]) -> list[int]:
    out: list[int] = []
    for i in range(STEPS):
        (op0, a), (op1, b) = pairs[2 * i], pairs[2 * i + 1]
        others = [j for j in range(i + 2) if j != a]
        out += [a, others.index(b), CELL_OPS.index(op0), CELL_OPS.index(op1)]
    return out


class DartsSpace(SearchSpace):
    """The DARTS cell space: a normal and a reduction cell of four two-input nodes.

    Args:
        C: initial width of the network; ``None`` takes the dataset's default (CIFAR 36,
            ImageNet 48, digits 8).
        layers: number of cells; ``None`` takes the dataset's default (CIFAR 20,
            ImageNet 14, digits 5).
    """

    name: ClassVar[str] = "darts"
    description: ClassVar[str] = (
        "DARTS cell space (normal + reduction cell, 4 nodes x 2 inputs, 7 ops); "
        "DARTS evaluation networks for CIFAR and ImageNet"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)
    genotype_cls: ClassVar[type[DartsGenotype]] = DartsGenotype

    def __init__(self, C: int | None = None, layers: int | None = None) -> None:
        for k, v in (("C", C), ("layers", layers)):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise InvalidGenotype(f"{self.name}: {k} must be a positive int, got {v!r}")
        if C is not None and C % 2:
            raise InvalidGenotype(f"{self.name}: C must be even (FactorizedReduce), got {C}")
        self.C = C
        self.layers = layers

    # ------------------------------------------------------------------ protocol

    def choices(self) -> list[tuple[str, int]]:
        return _cell_choices("normal") + _cell_choices("reduce")

    def from_indices(self, indices: Sequence[int]) -> DartsGenotype:
        ch = self.choices()
        if len(indices) != len(ch) or not all(
            0 <= int(v) < n for v, (_, n) in zip(indices, ch, strict=True)
        ):
            raise InvalidGenotype(
                f"{self.name}: expected {len(ch)} indices within {[n for _, n in ch]}, "
                f"got {list(indices)}"
            )
        half = len(ch) // 2
        return self.genotype_cls(
            _cell_from_indices(indices[:half]), _cell_from_indices(indices[half:])
        )

    def to_indices(self, genotype: Genotype) -> list[int]:
        g = self._check(genotype)
        return _cell_to_indices(g.normal) + _cell_to_indices(g.reduce)

    def parse(self, text: str) -> DartsGenotype:
        return parse_darts(text, self.genotype_cls)

    def known(self) -> Mapping[str, Genotype]:
        return {k: parse_darts(v, self.genotype_cls) for k, v in KNOWN.items()}

    def smallest(self) -> Genotype:
        """Max pooling on every edge, each node reading the two cell inputs: no parameters
        and no multiply-adds inside the cells."""
        cell = tuple(("max_pool_3x3", i % 2) for i in range(8))
        return self.genotype_cls(cell, cell)

    def skeleton(self, dataset: str) -> network.Skeleton:
        """The network skeleton for ``dataset`` with this space's C / layers overrides."""
        sk = network.DATASETS[dataset]
        return network.Skeleton(
            sk.input_shape,
            sk.num_classes,
            C=self.C or sk.C,
            layers=self.layers or sk.layers,
            stem=sk.stem,
            stem_multiplier=sk.stem_multiplier,
            drop_path_prob=sk.drop_path_prob,
        )

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g_ = self._check(genotype)
        sk = self.skeleton(dataset)
        graph = network.build(g_, sk)
        graph.meta.update(
            space=self.name,
            arch=g_.to_str(),
            dataset=dataset,
            C=sk.C,
            layers=sk.layers,
            auxiliary_head=False,
            drop_path_prob=sk.drop_path_prob,
        )
        return graph

    def _check(self, genotype: Genotype) -> DartsGenotype:
        if not isinstance(genotype, DartsGenotype):
            raise InvalidGenotype(f"{self.name}: not a DARTS genotype: {genotype!r}")
        if type(genotype) is not self.genotype_cls:
            genotype = self.genotype_cls(genotype.normal, genotype.reduce)
        return genotype


# --------------------------------------------------------------------------------------
# NAS-Bench-301 (NASLib's zero-cost sample)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NB301Genotype(DartsGenotype):
    """A DARTS genotype in the NAS-Bench-301 space (same cells, its own JSON space tag)."""

    space_name: ClassVar[str] = "nb301"


NB301_FILE = "nasbench/naslib_zc_nasbench301.json"
NB301_SKELETON = network.Skeleton((32, 32, 3), 10, C=32, layers=8)
"""The network of NASLib's NB301 ``params``: DARTS' CIFAR network with C=32 (a 96-channel
stem, cells of 128/256/512 output channels), 8 cells, no auxiliary head. (NASLib's current
``NasBench301SearchSpace`` builds C=16; the zero-cost file's counts are those of C=32, which
reproduces all 500 of them exactly.)"""


@functools.cache
def _nb301_table(path: str | None = None) -> dict[str, tuple[NB301Genotype, dict[str, float]]]:
    p = Path(path) if path else data_path(NB301_FILE)
    if not p.exists():
        raise DataError(
            f"NAS-Bench-301 sample not found at {p} (run `nas data fetch naslib-nb301` or set {DATA_ENV})"
        )
    try:
        data = json.loads(p.read_text())["nasbench301"]["cifar10"]
    except (json.JSONDecodeError, KeyError) as e:
        raise DataError(f"{p} is not NASLib's zero-cost NB301 file: {e!r}") from None
    out: dict[str, tuple[NB301Genotype, dict[str, float]]] = {}
    for key, rec in data.items():
        try:
            geno = parse_darts(key, NB301Genotype)
        except InvalidGenotype as e:
            raise DataError(f"{p}: entry {key!r} is not a valid NB301 key: {e}") from None
        out[geno.canonical().to_naslib()] = (geno, {k: float(v) for k, v in rec.items()})
    return out


def load_nb301(path: str | None = None) -> list[tuple[NB301Genotype, dict[str, float]]]:
    """Every NB301 entry of NASLib's zero-cost file: ``(genotype, record)``.

    A record holds ``val_accuracy`` (%), ``params`` (millions, NASLib's NB301 network),
    ``flops`` (millions, NASLib's convention) and the zero-cost proxies (``snip``,
    ``jacov``, ``grad_norm``, ``plain``, ``epe_nas``, ``fisher``, ``grasp``, ``l2_norm``,
    ``synflow``).
    """
    return [(g, dict(r)) for g, r in _nb301_table(path).values()]


class NB301Space(DartsSpace):
    """NAS-Bench-301: the DARTS cell space with NASLib's 8-cell, C=32 CIFAR-10 network.

    The network follows NASLib's ``NasBench301SearchSpace``: the DARTS CIFAR network with 8
    cells, no auxiliary head, non-affine BatchNorm inside the cell operations (affine in the
    stem and the preprocessing), and a non-affine BatchNorm after each pooling op. ``lookup``
    reads the validation accuracy of the 500 architectures of NASLib's zero-cost sample.
    """

    name: ClassVar[str] = "nb301"
    description: ClassVar[str] = (
        "NAS-Bench-301 (DARTS cell space), NASLib's 8-cell network; 500-arch CIFAR-10 sample"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = ("cifar10",)
    genotype_cls: ClassVar[type[DartsGenotype]] = NB301Genotype

    def __init__(self) -> None:
        super().__init__()

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g_ = self._check(genotype)
        sk = NB301_SKELETON
        graph = network.build(g_, sk, op_affine=False, pool_bn=True)
        graph.meta.update(
            space=self.name,
            arch=g_.to_str(),
            naslib=g_.to_naslib(),
            dataset=dataset,
            C=sk.C,
            layers=sk.layers,
            auxiliary_head=False,
        )
        return graph

    def lookup(self, genotype: Genotype, dataset: str) -> dict[str, float]:
        if dataset != "cifar10":
            raise UnknownName(f"nb301 has only cifar10, not {dataset!r}")
        g_ = self._check(genotype)
        rec = _nb301_table().get(g_.canonical().to_naslib())
        if rec is None:
            raise UnknownName(
                f"nb301: {g_.to_naslib()} is not among the 500 architectures of NASLib's "
                "NB301 sample (only those have a recorded accuracy)"
            )
        return {"accuracy": rec[1]["val_accuracy"]}
