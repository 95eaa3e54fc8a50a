"""BigNAS: single-stage elastic supernet (sandwich rule, in-place distillation)."""

from nas.search_spaces.bignas.space import BigNASGenotype, BigNASSpace

__all__ = ["BigNASGenotype", "BigNASSpace"]
