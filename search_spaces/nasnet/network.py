"""NASNet networks as IR graphs, following TF-slim ``nets/nasnet/nasnet.py``.

A network stacks ``3 N`` normal cells with a reduction cell before cells ``N`` and ``2 N``
(``calc_reduction_layers``); each reduction doubles the filter count ``F``. Cell ``k`` reads
the previous cell's output (hidden state 0, after ReLU-1x1 conv-BN) and the output before
that (hidden state 1: factorized reduction after a ReLU where the resolution differs, else
ReLU-1x1 conv-BN where the channel count differs, else as is; the stem when there is none).
The cell output concatenates the ``concat`` states; a state of another shape than the last
block's output first passes a factorized reduction. The head is ReLU, global average pooling,
dropout and a linear layer.

Stems: ``cifar`` is a 3x3 conv (``stem_multiplier * F`` filters) + BN; ``imagenet`` is a 3x3
stride-2 VALID conv (``stem_filters``) + BN followed by two reduction cells with ``F/4`` and
``F/2`` filters. The auxiliary head (trained with, not part of the reported network) is not
in the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nas.search_spaces.nasnet.genotypes import BLOCKS, NasnetGenotype
from nas.search_spaces.nasnet.ops import Builder, apply_op, factorized_reduction, spatial

from nas.graph import ArchGraph, CostConvention

NASNET_CONVENTION = CostConvention()
"""Multiply-adds of convolutions and the linear layer, no bias terms (the NASNet paper's
"mult-adds")."""


@dataclass(frozen=True)
class Skeleton:
    """The macro structure of a NASNet network (the TF hparams).

    Attributes:
        input_shape: (H, W, channels) of one image.
        num_classes: classifier outputs.
        N: normal cells per stack (``num_cells = 3 N``).
        F: filters of the first stack (``num_conv_filters``).
        stem: ``"cifar"`` or ``"imagenet"``.
        stem_multiplier: the CIFAR stem has ``int(F * stem_multiplier)`` filters.
        stem_filters: filters of the ImageNet stem conv (``int(32 * stem_multiplier)`` in
            TF-slim).
        skip_reduction_layer_input: hidden state 1 of the cell after a reduction cell is the
            output before the reduction's input (TF-slim's NASNet-A Large), not the reduction
            cell's input.
        drop_path_keep_prob: ScheduledDropPath keep probability in training (meta only).
        dense_dropout_keep_prob: keep probability of the dropout before the classifier.
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    N: int
    F: int
    stem: str = "cifar"
    stem_multiplier: float = 3.0
    stem_filters: int = 32
    skip_reduction_layer_input: bool = False
    drop_path_keep_prob: float = 1.0
    dense_dropout_keep_prob: float = 1.0

    def replace(self, **kw) -> Skeleton:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d.update({k: v for k, v in kw.items() if v is not None})
        return Skeleton(**d)


DATASETS: dict[str, Skeleton] = {
    # nasnet.py cifar_config(): 18 cells (N=6), 32 filters, stem multiplier 3.
    "cifar10": Skeleton((32, 32, 3), 10, N=6, F=32, drop_path_keep_prob=0.6),
    "cifar100": Skeleton((32, 32, 3), 100, N=6, F=32, drop_path_keep_prob=0.6),
    # nasnet.py mobile_imagenet_config(): 12 cells (N=4), 44 filters, stem multiplier 1.
    "imagenet": Skeleton(
        (224, 224, 3),
        1000,
        N=4,
        F=44,
        stem="imagenet",
        stem_multiplier=1.0,
        stem_filters=32,
        dense_dropout_keep_prob=0.5,
    ),
    "digits": Skeleton((8, 8, 1), 10, N=1, F=8),
}

LARGE_IMAGENET = Skeleton(
    (331, 331, 3),
    1000,
    N=6,
    F=168,
    stem="imagenet",
    stem_multiplier=3.0,
    stem_filters=96,
    skip_reduction_layer_input=True,
    drop_path_keep_prob=0.7,
    dense_dropout_keep_prob=0.5,
)
"""nasnet.py large_imagenet_config() (NASNet-A 6 @ 4032 on 331x331 images)."""


def reduction_layers(num_cells: int, num_reductions: int = 2) -> list[int]:
    """TF ``calc_reduction_layers``."""
    return [int(k / (num_reductions + 1) * num_cells) for k in range(1, num_reductions + 1)]


def cell(
    b: Builder,
    net: int,
    prev: int | None,
    pairs: Sequence[tuple[str, int]],
    concat: Sequence[int],
    filters: int,
    stride: int,
    scope: str,
) -> int:
    """One NASNet cell (``NasNetABaseCell.__call__``)."""
    # _reduce_prev_layer
    if prev is None:
        prev = net
    elif spatial(b, prev) != spatial(b, net):
        p = b.same("relu", prev, f"{scope}/prev")
        prev = factorized_reduction(b, p, filters, 2, f"{scope}/prev")
    elif b.channels(prev) != filters:
        prev = b.conv_bn(prev, filters, 1, f"{scope}/prev_1x1")
    # _cell_base
    h0 = b.conv_bn(net, filters, 1, f"{scope}/1x1")
    states = [h0, prev]
    for blk in range(BLOCKS):
        terms = []
        for side in (0, 1):
            op, src = pairs[2 * blk + side]
            s = stride if src < 2 else 1
            name = ("left", "right")[side]
            terms.append(apply_op(b, states[src], op, s, filters, f"{scope}/comb{blk}/{name}"))
        states.append(b.add(terms, f"{scope}/comb{blk}"))
    # _combine_unused_states
    final_hw, final_c = spatial(b, states[-1]), b.channels(states[-1])
    outs = []
    for s in concat:
        x = states[s]
        if spatial(b, x) != final_hw or b.channels(x) != final_c:
            st = 2 if spatial(b, x) != final_hw else 1
            x = factorized_reduction(b, x, final_c, st, f"{scope}/out_reduction{s}")
        outs.append(x)
    return b.concat(outs, f"{scope}/out")


def build(
    genotype: NasnetGenotype,
    sk: Skeleton,
    convention: CostConvention = NASNET_CONVENTION,
) -> ArchGraph:
    """The NASNet network of ``genotype`` on skeleton ``sk`` (``_build_nasnet_base``)."""
    g = ArchGraph(convention=convention)
    b = Builder(g)
    x = b.input(tuple(sk.input_shape))
    normal = (genotype.normal, genotype.normal_concat)
    reduce = (genotype.reduce, genotype.reduce_concat)

    if sk.stem == "cifar":
        x = b.conv(x, int(sk.F * sk.stem_multiplier), 3, "stem")
        net = b.same("batch_norm", x, "stem")
        outputs: list[int | None] = [None, net]
        stem_cells = 0
    elif sk.stem == "imagenet":
        x = b.conv(x, sk.stem_filters, 3, "stem/conv0", stride=2, padding="VALID")
        net = b.same("batch_norm", x, "stem/conv0")
        outputs = [None, net]
        stem_cells = 2
        scaling = 1.0 / 2**stem_cells
        for k in range(stem_cells):
            net = cell(b, net, outputs[-2], *reduce, int(sk.F * scaling), 2, f"cell_stem_{k}")
            outputs.append(net)
            scaling *= 2
    else:
        raise ValueError(f"unknown NASNet stem {sk.stem!r}")

    num_cells = 3 * sk.N
    reductions = reduction_layers(num_cells)
    scaling = 1.0
    prev: int | None = None
    for k in range(num_cells):
        if sk.skip_reduction_layer_input:
            prev = outputs[-2]
        if k in reductions:
            scaling *= 2
            r = reductions.index(k)
            net = cell(b, net, outputs[-2], *reduce, int(sk.F * scaling), 2, f"reduction_cell_{r}")
            outputs.append(net)
        if not sk.skip_reduction_layer_input:
            prev = outputs[-2]
        net = cell(b, net, prev, *normal, int(sk.F * scaling), 1, f"cell_{k}")
        outputs.append(net)

    x = b.same("relu", net, "final_layer")
    x = b.global_pool(x, "final_layer")
    if sk.dense_dropout_keep_prob < 1.0:
        x = b.same("dropout", x, "final_layer", rate=round(1.0 - sk.dense_dropout_keep_prob, 6))
    x = b.dense(x, sk.num_classes, "final_layer")
    g.add("output", [x])
    g.finalize()
    for n, shape in b.shapes.items():  # the builder's shapes must agree with the IR's
        if g.shape(n) != shape:
            raise AssertionError(f"node {n}: built {shape}, inferred {g.shape(n)}")
    return g
