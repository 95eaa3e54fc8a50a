"""Single Path One-Shot's ShuffleNetV2 search space."""

from nas.search_spaces.spos.space import SCALES, SPOSGenotype, SPOSSpace, parse_spos

__all__ = ["SCALES", "SPOSGenotype", "SPOSSpace", "parse_spos"]
