"""Search-space families. Each is registered here by name and imported on first use."""

from __future__ import annotations

import importlib
from typing import Any

from nas.errors import UnknownName

# name -> "module:Class". One line per space; families live in their own packages with the
# same file names (space.py, ops.py, network.py, supernet.py, encodings.py).
REGISTRY: dict[str, str] = {
    "nb101": "search_spaces.nb101.space:NB101Space",
    "nb201": "search_spaces.nb201.space:NB201Space",
    "darts": "search_spaces.darts.space:DartsSpace",
    "nasnet": "search_spaces.nasnet.space:NasnetSpace",
    "nb301": "search_spaces.darts.space:NB301Space",
    "spos": "search_spaces.spos.space:SPOSSpace",
    "spos-channels": "search_spaces.spos.space:SPOSChannelSpace",
    "nbmacro": "search_spaces.nbmacro.space:NBMacroSpace",
    "ofa": "search_spaces.ofa.space:OFASpace",
    "ofa-proxyless": "search_spaces.ofa.space:OFAProxylessSpace",
    "bignas": "search_spaces.bignas.space:BigNASSpace",
}


def space_names() -> list[str]:
    return sorted(REGISTRY)


def get_space(name: str, **options: Any):
    """An instance of the space registered as ``name``."""
    if name not in REGISTRY:
        raise UnknownName(f"unknown search space {name!r}; choose one of {space_names()}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)
