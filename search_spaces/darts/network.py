"""DARTS evaluation networks as IR graphs (``NetworkCIFAR`` / ``NetworkImageNet`` of the DARTS
code, and NASLib's NAS-Bench-301 variant).

A network is a stem, ``layers`` cells and a classifier (global average pooling, linear).
Reduction cells sit at ``layers // 3`` and ``2 * layers // 3`` and double the width ``C``.
Each cell preprocesses its two inputs to ``C`` channels: ``c_{k-1}`` by ReLU-1x1 conv-BN,
``c_{k-2}`` likewise, or by FactorizedReduce when the previous cell reduced the resolution.
Its output concatenates the four intermediate nodes (``4 C`` channels).

Stems: ``cifar`` is a 3x3 conv to ``3 C`` channels + BN, feeding both inputs of the first
cell. ``imagenet`` is DARTS' ``NetworkImageNet`` stem: stem0 = conv 3x3/2 (C/2) BN ReLU
conv 3x3/2 (C) BN, stem1 = ReLU conv 3x3/2 (C) BN; the first cell reads (stem0, stem1) and
treats stem0 as a reduced-resolution previous-previous input (FactorizedReduce).

The auxiliary classifier of the DARTS code is not part of the graph (the IR has one output),
and DARTS excludes it from the parameter count it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nas.search_spaces.darts.genotypes import STEPS, DartsGenotype
from nas.search_spaces.darts.ops import edge_op, factorized_reduce, relu_conv_bn

from nas.graph import ArchGraph, CostConvention

DARTS_CONVENTION = CostConvention()
"""FLOPs as conv and linear multiply-accumulates, no bias terms (DARTS' reported MACs)."""


@dataclass(frozen=True)
class Skeleton:
    """The macro structure of a DARTS network.

    Attributes:
        input_shape: (H, W, channels) of one image.
        num_classes: classifier outputs.
        C: initial cell width (channels per intermediate node of the first cells).
        layers: number of cells.
        stem: ``"cifar"`` or ``"imagenet"``.
        stem_multiplier: the CIFAR stem has ``stem_multiplier * C`` channels.
        drop_path_prob: DARTS' drop-path probability in training (recorded in meta).
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    C: int
    layers: int
    stem: str = "cifar"
    stem_multiplier: int = 3
    drop_path_prob: float = 0.0


# (skeleton, description) per dataset; the DARTS paper's evaluation settings.
DATASETS: dict[str, Skeleton] = {
    "cifar10": Skeleton((32, 32, 3), 10, C=36, layers=20, drop_path_prob=0.2),
    "cifar100": Skeleton((32, 32, 3), 100, C=36, layers=20, drop_path_prob=0.2),
    "imagenet": Skeleton((224, 224, 3), 1000, C=48, layers=14, stem="imagenet"),
    "digits": Skeleton((8, 8, 1), 10, C=8, layers=5),
}


def reduction_layers(layers: int) -> tuple[int, int]:
    return (layers // 3, 2 * layers // 3)


def cell(
    g: ArchGraph,
    s0: int,
    s1: int,
    pairs: Sequence[tuple[str, int]],
    concat: Sequence[int],
    c: int,
    reduction: bool,
    reduction_prev: bool,
    scope: str,
    op_affine: bool = True,
    pool_bn: bool = False,
) -> int:
    """One DARTS cell (``model.py: Cell``) reading ``s0 = c_{k-2}`` and ``s1 = c_{k-1}``."""
    if reduction_prev:
        s0 = factorized_reduce(g, s0, c, f"{scope}/preprocess0")
    else:
        s0 = relu_conv_bn(g, s0, c, 1, 1, 0, f"{scope}/preprocess0")
    s1 = relu_conv_bn(g, s1, c, 1, 1, 0, f"{scope}/preprocess1")
    states = [s0, s1]
    for i in range(STEPS):
        terms = []
        for k in (2 * i, 2 * i + 1):
            op, src = pairs[k]
            stride = 2 if reduction and src < 2 else 1
            terms.append(
                edge_op(
                    g,
                    op,
                    states[src],
                    c,
                    stride,
                    f"{scope}/node{i + 2}/op{k % 2}",
                    affine=op_affine,
                    pool_bn=pool_bn,
                )
            )
        states.append(g.add("add", terms, scope=f"{scope}/node{i + 2}"))
    return g.add("concat", [states[i] for i in concat], scope=f"{scope}/out")


def build(
    genotype: DartsGenotype,
    skeleton: Skeleton,
    op_affine: bool = True,
    pool_bn: bool = False,
    convention: CostConvention = DARTS_CONVENTION,
) -> ArchGraph:
    """The evaluation network of ``genotype`` on ``skeleton``.

    Args:
        op_affine: whether the BatchNorms inside the cell operations learn scale and offset
            (the DARTS evaluation network: yes; NASLib's NAS-Bench-301 network: no). The
            stem's and the preprocessing BatchNorms are affine in both.
        pool_bn: follow pooling ops by a non-affine BN (the search-network convention that
            NASLib keeps in its NB301 network).
    """
    sk = skeleton
    g = ArchGraph(convention=convention)
    x = g.add("input", shape=list(sk.input_shape))
    c = sk.C
    if sk.stem == "cifar":
        c_stem = sk.stem_multiplier * c
        x = g.add("conv", [x], scope="stem", out_channels=c_stem, kernel=3, padding=1)
        s0 = s1 = g.add("batch_norm", [x], scope="stem")
        reduction_prev = False
    elif sk.stem == "imagenet":
        x = g.add("conv", [x], scope="stem0", out_channels=c // 2, kernel=3, stride=2, padding=1)
        x = g.add("batch_norm", [x], scope="stem0")
        x = g.add("relu", [x], scope="stem0")
        x = g.add("conv", [x], scope="stem0", out_channels=c, kernel=3, stride=2, padding=1)
        s0 = g.add("batch_norm", [x], scope="stem0")
        x = g.add("relu", [s0], scope="stem1")
        x = g.add("conv", [x], scope="stem1", out_channels=c, kernel=3, stride=2, padding=1)
        s1 = g.add("batch_norm", [x], scope="stem1")
        reduction_prev = True
    else:
        raise ValueError(f"unknown DARTS stem {sk.stem!r}")

    reductions = reduction_layers(sk.layers)
    c_curr = c
    for i in range(sk.layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        pairs, concat = (
            (genotype.reduce, genotype.reduce_concat)
            if reduction
            else (genotype.normal, genotype.normal_concat)
        )
        out = cell(
            g,
            s0,
            s1,
            pairs,
            concat,
            c_curr,
            reduction,
            reduction_prev,
            f"cell{i}",
            op_affine=op_affine,
            pool_bn=pool_bn,
        )
        s0, s1 = s1, out
        reduction_prev = reduction
    x = g.add("global_pool", [s1], scope="head")
    x = g.add("dense", [x], scope="head", out_features=sk.num_classes)
    g.add("output", [x])
    return g.finalize()
