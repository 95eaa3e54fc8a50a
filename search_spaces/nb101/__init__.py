"""NAS-Bench-101."""

from nas.search_spaces.nb101.network import compute_vertex_channels, naslib_flops
from nas.search_spaces.nb101.space import (
    NB101Genotype,
    NB101Space,
    from_naslib_key,
    hash_spec,
    load_nb101,
    parse_nb101,
    prune,
)

__all__ = [
    "NB101Genotype",
    "NB101Space",
    "compute_vertex_channels",
    "from_naslib_key",
    "hash_spec",
    "load_nb101",
    "naslib_flops",
    "parse_nb101",
    "prune",
]
