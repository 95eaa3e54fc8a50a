"""The NASNet cell search space (Zoph et al., 2018).

Decisions (``choices``), for the normal then the reduction cell, for each block ``b = 0..4``:
its two input hidden states (``b + 2`` options each; both may be the same state) and its two
operations (13 options each, :data:`~nas.search_spaces.nasnet.genotypes.OPS`). The cell output
is not a decision: a genotype built from decisions concatenates the states no block reads
(the paper's rule). Published cells may concatenate other states (the TF specs of NASNet-A
and AmoebaNet-A do); they keep their ``concat`` as given, ``to_indices`` ignores it, so
``from_indices(to_indices(g))`` equals ``g`` only for genotypes that follow the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from nas.search_spaces.nasnet import network
from nas.search_spaces.nasnet.genotypes import (
    BLOCKS,
    OPS,
    PUBLISHED_SKELETONS,
    NasnetGenotype,
    known_genotypes,
    parse_nasnet,
)

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph
from nas.space import Genotype, SearchSpace


def _cell_choices(prefix: str) -> list[tuple[str, int]]:
    out = []
    for blk in range(BLOCKS):
        out += [
            (f"{prefix}_block{blk}_input0", blk + 2),
            (f"{prefix}_block{blk}_input1", blk + 2),
            (f"{prefix}_block{blk}_op0", len(OPS)),
            (f"{prefix}_block{blk}_op1", len(OPS)),
        ]
    return out


def _cell_from_indices(idx: Sequence[int]) -> tuple[tuple[str, int], ...]:
    pairs: list[tuple[str, int]] = []
    for blk in range(BLOCKS):
        a, b, o0, o1 = (int(v) for v in idx[4 * blk : 4 * blk + 4])
        pairs += [(OPS[o0], a), (OPS[o1], b)]
    return tuple(pairs)


def _cell_to_indices(pairs: Sequence[tuple[str, int]]) -> list[int]:
    out: list[int] = []
    for blk in range(BLOCKS):
        (op0, a), (op1, b) = pairs[2 * blk], pairs[2 * blk + 1]
        out += [a, b, OPS.index(op0), OPS.index(op1)]
    return out


class NasnetSpace(SearchSpace):
    """The NASNet space: a normal and a reduction cell of five two-input blocks.

    Args:
        N: normal cells per stack; ``None`` takes the dataset's default (CIFAR 6, ImageNet
            mobile 4, digits 1).
        F: filters of the first stack; ``None`` takes the dataset's default (CIFAR 32,
            ImageNet mobile 44, digits 8).
        large: on ``imagenet``, build TF-slim's NASNet-A Large skeleton (N=6, F=168, a
            96-filter stem, 331x331 images, ``skip_reduction_layer_input``) instead of the
            mobile one.
        stem_filters: filters of the ImageNet stem conv (mobile 32, large 96; the AmoebaNet
            TPU code uses 32 for every size).
        image_size: ImageNet input resolution (mobile 224, large 331).
    """

    name: ClassVar[str] = "nasnet"
    description: ClassVar[str] = (
        "NASNet cell space (normal + reduction cell, 5 blocks, 13 ops); TF-slim NASNet "
        "skeletons for CIFAR and ImageNet"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)

    def __init__(
        self,
        N: int | None = None,
        F: int | None = None,
        large: bool = False,
        stem_filters: int | None = None,
        image_size: int | None = None,
    ) -> None:
        for k, v in (
            ("N", N),
            ("F", F),
            ("stem_filters", stem_filters),
            ("image_size", image_size),
        ):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise InvalidGenotype(f"nasnet: {k} must be a positive int, got {v!r}")
        self.N = N
        self.F = F
        self.large = bool(large)
        self.stem_filters = stem_filters
        self.image_size = image_size

    def choices(self) -> list[tuple[str, int]]:
        return _cell_choices("normal") + _cell_choices("reduce")

    def from_indices(self, indices: Sequence[int]) -> NasnetGenotype:
        ch = self.choices()
        if len(indices) != len(ch) or not all(
            0 <= int(v) < n for v, (_, n) in zip(indices, ch, strict=True)
        ):
            raise InvalidGenotype(
                f"nasnet: expected {len(ch)} indices within {[n for _, n in ch]}, "
                f"got {list(indices)}"
            )
        half = len(ch) // 2
        return NasnetGenotype(
            _cell_from_indices(indices[:half]), _cell_from_indices(indices[half:])
        )

    def to_indices(self, genotype: Genotype) -> list[int]:
        g = self._check(genotype)
        return _cell_to_indices(g.normal) + _cell_to_indices(g.reduce)

    def parse(self, text: str) -> NasnetGenotype:
        return parse_nasnet(text)

    def known(self) -> Mapping[str, Genotype]:
        return known_genotypes()

    def skeleton(self, dataset: str, published: str | None = None) -> network.Skeleton:
        """The network skeleton for ``dataset``: a published network's own (``published``,
        e.g. AmoebaNet-A: N=6, F=36 on CIFAR), else the dataset's; the space's ``N``/``F``
        override both."""
        sk = network.DATASETS[dataset]
        if self.large and dataset == "imagenet":
            sk = network.LARGE_IMAGENET
        elif published is not None and dataset in PUBLISHED_SKELETONS[published]:
            sk = sk.replace(**PUBLISHED_SKELETONS[published][dataset])
        sk = sk.replace(N=self.N, F=self.F)
        if sk.stem == "imagenet":
            size = self.image_size
            sk = sk.replace(
                stem_filters=self.stem_filters,
                input_shape=(size, size, 3) if size else None,
            )
        return sk

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g_ = self._check(genotype)
        sk = self.skeleton(dataset, g_.published)
        graph = network.build(g_, sk)
        graph.meta.update(
            space=self.name,
            arch=g_.to_str(),
            dataset=dataset,
            N=sk.N,
            F=sk.F,
            input_shape=list(sk.input_shape),
            auxiliary_head=False,
            drop_path_keep_prob=sk.drop_path_keep_prob,
        )
        return graph

    def _check(self, genotype: Genotype) -> NasnetGenotype:
        if not isinstance(genotype, NasnetGenotype):
            raise InvalidGenotype(f"nasnet: not a NASNet genotype: {genotype!r}")
        return genotype
