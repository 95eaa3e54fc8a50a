"""Search-space families, one package each with the same file names (space.py, ops.py,
network.py, supernet.py, encodings.py). They are registered in :mod:`nas.registry`."""

from __future__ import annotations

from typing import Any

from nas import registry


def space_names() -> list[str]:
    """Every registered space (built-in and plugins'): :func:`nas.registry.names`."""
    return registry.names("spaces")


def get_space(name: str, **options: Any):
    """An instance of the space registered as ``name`` (built-in or a plugin's)."""
    return registry.load("spaces", name)(**options)
