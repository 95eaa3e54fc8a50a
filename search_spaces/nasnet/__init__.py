"""The NASNet cell search space (NASNet-A, AmoebaNet-A)."""

from nas.search_spaces.nasnet.genotypes import OPS, NasnetGenotype, known_genotypes, parse_nasnet
from nas.search_spaces.nasnet.space import NasnetSpace

__all__ = ["OPS", "NasnetGenotype", "NasnetSpace", "known_genotypes", "parse_nasnet"]
