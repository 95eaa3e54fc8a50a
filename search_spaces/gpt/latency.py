"""Latency lookup tables for gpt children, measured on this machine.

A child's latency is the sum of its parts' latencies: the ends (byte and position embedding,
final norm, tied output layer) at its width, plus one entry per layer for its width, heads
and MLP width, at the space's context length. :func:`measure_table` times each distinct part
as an IR-built model (median of ``repeats`` compiled forwards, batch ``batch``), as
``nas.search_spaces.ofa.latency`` does for the CNN spaces; ``nas latency-table --space gpt``
writes one and ``--latency-table FILE --max-latency MS`` uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas.search_spaces.gpt.space import GPTGenotype, GPTSpace
from nas.search_spaces.ofa.latency import time_layer
from nas.search_spaces.transformer.network import BlockSpec, block_graph, build

from nas.errors import ConfigError, DataError


def block_key(space: GPTSpace, d: int, heads: int, ffn: int) -> str:
    return f"block-d:{d}-heads:{heads}x{space.head_dim}-ffn:{ffn}-seq:{space.context}"


def ends_key(space: GPTSpace, d: int) -> str:
    return f"ends-d:{d}-vocab:{space.vocab}-seq:{space.context}"


class GPTLatencyTable:
    """Part latencies (ms) by key; a child costs the sum of its parts."""

    def __init__(self, entries: Mapping[str, float], name: str = "") -> None:
        self.entries = dict(entries)
        self.name = name

    def _get(self, key: str) -> float:
        if key not in self.entries:
            raise ConfigError(
                f"latency table {self.name} has no entry {key!r}: it was measured for another "
                "gpt space (build one with `nas latency-table --space gpt`)"
            )
        return self.entries[key]

    def predict_genotype(self, space: GPTSpace, genotype: GPTGenotype) -> float:
        total = self._get(ends_key(space, genotype.d_model))
        for h, f in zip(genotype.heads, genotype.ffn, strict=True):
            total += self._get(block_key(space, genotype.d_model, h, f))
        return total

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"kind": "gpt", "name": self.name, "entries": self.entries}, indent=1)
        )
        return path


def load_table(path: str | Path) -> GPTLatencyTable:
    """A table written by :meth:`GPTLatencyTable.save`."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"latency table {p} does not exist")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p} is not a latency table: {e}") from None
    if not isinstance(data, dict) or data.get("kind") != "gpt":
        raise DataError(f"{p} is not a gpt latency table (make one with nas latency-table)")
    return GPTLatencyTable({k: float(v) for k, v in data["entries"].items()}, str(p))


def measure_table(
    space: GPTSpace,
    batch: int = 1,
    repeats: int = 20,
    progress: Callable[[str, float], Any] | None = None,
) -> GPTLatencyTable:
    """Time every part any child of ``space`` uses (see the module docstring)."""
    entries: dict[str, float] = {}
    for d in space.d_models:
        largest = space.net_spec(space.genotype_cls(d, (space.head_counts[0],), (space.ffns[0],)))
        ends = build(_without_blocks(largest))
        entries[ends_key(space, d)] = time_layer(ends, batch, repeats)
        for h in space.head_counts:
            for f in space.ffns:
                graph = block_graph(largest, BlockSpec(h, f, space.head_dim))
                key = block_key(space, d, h, f)
                entries[key] = time_layer(graph, batch, repeats)
                if progress:
                    progress(key, entries[key])
    return GPTLatencyTable(entries, f"measured here (batch {batch})")


def _without_blocks(spec):
    from dataclasses import replace

    return replace(spec, blocks=())
