"""NAS-Bench-Macro: the 3^8 MobileNetV2-block macro space, trained on CIFAR-10."""

from nas.search_spaces.nbmacro.space import (
    NBMacroGenotype,
    NBMacroSpace,
    load_macro,
    load_table,
    parse_nbmacro,
)

__all__ = ["NBMacroGenotype", "NBMacroSpace", "load_macro", "load_table", "parse_nbmacro"]
