"""The OFA-ProxylessNAS elastic supernet (``ofa_proxyless.py``).

The same :class:`~nas.search_spaces.ofa.supernet.ElasticMBNet` as OFA-MobileNetV3 over
ProxylessNAS's layout: a 3x3 stride-2 stem, a fixed first block (depthwise 3x3, expand 1, no
shortcut), five elastic units of up to four MBConv blocks (kernel {3,5,7}, expand {3,4,6})
and a sixth unit of one block whose kernel and expand ratio are elastic, then the 1x1
feature-mix conv (with BN) before the pool and the classifier. ReLU6 throughout, no
squeeze-and-excitation, BatchNorm eps 1e-3, widths scaled by ``width_mult`` (1.3 for the
published ``ofa_proxyless_d234_e346_k357_w1.3``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from nas.search_spaces.ofa import network as net
from nas.search_spaces.ofa.elastic import (
    OFA_RESOLUTIONS,
    OFA_TRAINING,
    ElasticNet,
    ProgressiveShrinking,
)
from nas.search_spaces.ofa.supernet import (
    ElasticMBNet,
    NetLayout,
    StageLayout,
    SubnetChoice,
    encode_arch,
)

from nas.errors import InvalidGenotype
from nas.space import SearchSpace
from nas.training import TrainingOptions


def proxyless_layout(
    width_mult: float = 1.3, n_classes: int = 1000, in_channels: int = 3, dropout: float = 0.1
) -> NetLayout:
    """The OFA-ProxylessNAS supernet at its largest."""
    base = net.PROXYLESS_BASE_WIDTH
    stem = net._width(base[0], width_mult)
    first = net._width(base[1], width_mult)
    widths = [net._width(b, width_mult) for b in base[2:-1]]
    stages = [StageLayout(first, 1, "relu6", False, 1, (3,), 1, False)]
    for i, (w, s) in enumerate(zip(widths, net.PROXYLESS_STRIDES, strict=True)):
        depth = net.MAX_DEPTH if i < net.N_UNITS else 1
        stages.append(
            StageLayout(
                w,
                s,
                "relu6",
                False,
                depth,
                net.KS_CHOICES,
                max(net.E_CHOICES),
                expands=net.E_CHOICES,
            )  # fmt: skip
        )
    return NetLayout(
        in_channels=in_channels,
        stem_width=stem,
        stem_act="relu6",
        stages=tuple(stages),
        head_width=net._width(base[-1], width_mult),
        head_act="relu6",
        feature_mix=0,
        n_classes=n_classes,
        dropout=dropout,
        kernel_transform=True,
        bn=(0.1, 1e-3),
        head_before_pool=True,
    )


class OFAProxylessSupernet(ElasticMBNet):
    """The elastic supernet of an :class:`~nas.search_spaces.ofa.space.OFAProxylessSpace`."""

    def __init__(
        self, space: Any, dataset: str = "digits", dw_impl: str | None = None, seed: int = 0
    ) -> None:
        shape, classes = net.DATASETS[space.check_dataset(dataset)]
        self.space_name = space.name
        self.dataset = dataset
        chans = shape[2] if shape else 3
        layout = proxyless_layout(space.width_mult, classes, chans, space.dropout)
        super().__init__(layout, dw_impl, seed)

    def arch(self, genotype: Any) -> dict[str, np.ndarray]:
        """The traced-array form of an ``ofa-proxyless`` genotype."""
        from nas.search_spaces.ofa.space import OFAProxylessGenotype

        if not isinstance(genotype, OFAProxylessGenotype):
            raise InvalidGenotype(f"ofa-proxyless supernet: not its genotype: {genotype!r}")
        L = self.layout
        choice = SubnetChoice(
            stem=L.stem_width,
            widths=tuple(s.max_width for s in L.stages),
            depths=(1, *genotype.d, 1),
            ks=(3, *genotype.ks),
            expand=(1, *genotype.e),
            head=L.head_width,
        )
        return encode_arch(L, choice)


class OFAProxylessNet(ElasticNet):
    """The OFA-ProxylessNAS supernet, trained by progressive shrinking as OFA's."""

    defaults: ClassVar[TrainingOptions] = OFA_TRAINING
    train_resolutions = OFA_RESOLUTIONS

    def build(self, space: SearchSpace, dataset: str, seed: int) -> ElasticMBNet:
        return OFAProxylessSupernet(space, dataset, seed=seed)

    def training(self, options: TrainingOptions, seed: int) -> ProgressiveShrinking:
        return ProgressiveShrinking(self, options, seed, self.train_resolutions)


__all__ = ["OFAProxylessNet", "OFAProxylessSupernet", "proxyless_layout"]
