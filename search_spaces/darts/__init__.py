"""The DARTS cell search space and NAS-Bench-301."""

from nas.search_spaces.darts.genotypes import (
    CELL_OPS,
    KNOWN,
    PRIMITIVES,
    DartsGenotype,
    parse_darts,
)
from nas.search_spaces.darts.space import DartsSpace, NB301Genotype, NB301Space, load_nb301

__all__ = [
    "CELL_OPS",
    "KNOWN",
    "PRIMITIVES",
    "DartsGenotype",
    "DartsSpace",
    "NB301Genotype",
    "NB301Space",
    "load_nb301",
    "parse_darts",
]
