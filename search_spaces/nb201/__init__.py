"""NAS-Bench-201."""

from nas.search_spaces.nb201.space import NB201Genotype, NB201Space, load_table, parse_nb201

__all__ = ["NB201Genotype", "NB201Space", "load_table", "parse_nb201"]
