"""Once-for-All: OFA-MobileNetV3 and OFA-ProxylessNAS elastic spaces, published networks."""

from nas.search_spaces.ofa.network import OFA_CONVENTION, NetSpec, build
from nas.search_spaces.ofa.space import (
    ElasticGenotype,
    OFAGenotype,
    OFAProxylessGenotype,
    OFAProxylessSpace,
    OFASpace,
    parse_elastic,
)
from nas.search_spaces.ofa.specialized import (
    OFANetGenotype,
    from_ofa_config,
    load,
    load_specialized,
    mobilenet_v3_large,
    to_elastic,
)

__all__ = [
    "OFA_CONVENTION",
    "ElasticGenotype",
    "NetSpec",
    "OFAGenotype",
    "OFANetGenotype",
    "OFAProxylessGenotype",
    "OFAProxylessSpace",
    "OFASpace",
    "build",
    "from_ofa_config",
    "load",
    "load_specialized",
    "mobilenet_v3_large",
    "parse_elastic",
    "to_elastic",
]
