"""Latency lookup tables for OFA networks: OFA's Samsung Note10 table, and tables measured here.

A table maps a layer key to its latency in milliseconds; a network's latency is the sum over
its layers (OFA's ``LatencyTable.predict_network_latency_given_config``). Keys are built as
OFA builds them (``ofa/nas/efficiency_predictor/latency_lookup_table.py``):

- MobileNetV3 (``MBv3LatencyTable``): ``Conv`` (first conv), ``expanded_conv`` per block
  (``input:HxWxC-output:HxWxC-expand:<mid>-kernel:k-stride:s-idskip:0|1-se:0|1-hs:0|1``),
  ``Conv_1`` (final expand), ``AvgPool2D``, ``Conv_2`` (feature mix), ``Logits``.
- ProxylessNAS (``ProxylessNASLatencyTable``): ``Conv``, ``expanded_conv`` (with the expand
  *ratio* and no se/hs fields), ``Conv_1`` (feature mix), ``Logits``.

Spatial sizes follow OFA: the first conv gives ``(r + 1) // 2``, a block of stride ``s``
gives ``int((f - 1) / s + 1)``.

The Note10 files (``ofa_note10_latency_lut/{160,176,192,208,224}_lookup_table.yaml``) were
measured for the OFA-MobileNetV3 w1.2 space, so they price w1.2 networks at those
resolutions (the ``note10_lat@*`` published nets among them). :func:`measure_table` builds a
table of the same form on this machine by timing each layer of the IR-built model
(``nas.model.build_model``), so the same estimator serves the user's own hardware.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nas.search_spaces.ofa.network import NetSpec

from nas.errors import ConfigError, DataError
from nas.paths import data_path

NOTE10_DIR = "ofa/ofa_note10_latency_lut"


def _shape(s: Iterable[int]) -> str:
    return "x".join(str(int(v)) for v in s)


def layer_keys(spec: NetSpec, resolution: int) -> list[tuple[str, dict[str, Any]]]:
    """OFA's lookup keys of a network's layers, each with what :func:`measure_table` needs to
    rebuild the layer."""
    out: list[tuple[str, dict[str, Any]]] = []
    r = resolution
    f = (r + 1) // 2
    c = spec.first_conv.out_channels
    out.append(
        (
            f"Conv-input:{_shape([r, r, 3])}-output:{_shape([f, f, c])}",
            {"kind": "first_conv", "in": (r, r, 3), "spec": spec.first_conv},
        )
    )
    for b in spec.blocks:
        fo = int((f - 1) / b.stride + 1)
        head = f"expanded_conv-input:{_shape([f, f, c])}-output:{_shape([fo, fo, b.out_channels])}"
        if spec.family == "mbv3":
            key = (
                f"{head}-expand:{b.mid_channels}-kernel:{b.kernel}-stride:{b.stride}"
                f"-idskip:{int(b.residual)}-se:{int(b.use_se)}-hs:{int(b.act == 'h_swish')}"
            )
        else:
            ratio = b.expand_ratio if b.expand_ratio is not None else b.mid_channels / c
            key = (
                f"{head}-expand:{int(ratio)}-kernel:{b.kernel}-stride:{b.stride}"
                f"-idskip:{int(b.residual)}"
            )
        out.append((key, {"kind": "block", "in": (f, f, c), "spec": b}))
        f, c = fo, b.out_channels
    if spec.family == "mbv3":
        fe, fm = spec.final_expand, spec.feature_mix
        assert fe is not None and fm is not None
        out.append(
            (
                f"Conv_1-input:{_shape([f, f, c])}-output:{_shape([f, f, fe.out_channels])}",
                {"kind": "conv", "in": (f, f, c), "spec": fe},
            )
        )
        c = fe.out_channels
        out.append(
            (
                f"AvgPool2D-input:{_shape([f, f, c])}-output:{_shape([1, 1, c])}",
                {"kind": "pool", "in": (f, f, c)},
            )
        )
        out.append(
            (
                f"Conv_2-input:{_shape([1, 1, c])}-output:{_shape([1, 1, fm.out_channels])}",
                {"kind": "conv", "in": (1, 1, c), "spec": fm},
            )
        )
        c = fm.out_channels
        out.append(
            (
                f"Logits-input:{_shape([1, 1, c])}-output:{spec.classifier.out_features}",
                {"kind": "logits", "in": (c,), "spec": spec.classifier},
            )
        )
    else:
        fm = spec.feature_mix
        assert fm is not None
        out.append(
            (
                f"Conv_1-input:{_shape([f, f, c])}-output:{_shape([f, f, fm.out_channels])}",
                {"kind": "conv", "in": (f, f, c), "spec": fm},
            )
        )
        c = fm.out_channels
        out.append(
            (
                f"Logits-input:{_shape([f, f, c])}-output:{spec.classifier.out_features}",
                {"kind": "pool_logits", "in": (f, f, c), "spec": spec.classifier},
            )
        )
    return out


class LatencyTable:
    """Per-layer latencies (ms) by OFA key; a network costs the sum of its layers.

    Args:
        tables: resolution -> {key: ms} (OFA's files hold one resolution each), or one
            mapping for every resolution.
        name: where the table came from.
    """

    def __init__(self, tables: Mapping[int | None, Mapping[str, float]], name: str = "") -> None:
        self.tables = {k: dict(v) for k, v in tables.items()}
        self.name = name

    def prices(self, resolution: int) -> bool:
        """Whether the table has entries for ``resolution``."""
        return resolution in self.tables or None in self.tables

    def _table(self, resolution: int) -> dict[str, float]:
        if resolution in self.tables:
            return self.tables[resolution]
        if None in self.tables:
            return self.tables[None]
        raise ConfigError(
            f"latency table {self.name}: no entries for resolution {resolution}; "
            f"it has {sorted(k for k in self.tables if k is not None)}"
        )

    def predict(self, spec: NetSpec, resolution: int) -> float:
        """The network's latency in ms (raises ConfigError for a layer the table lacks)."""
        table = self._table(resolution)
        total = 0.0
        for key, _ in layer_keys(spec, resolution):
            if key not in table:
                raise ConfigError(
                    f"latency table {self.name} has no entry {key!r}: it was measured for "
                    "another width or resolution (build one with `nas latency-table`)"
                )
            total += table[key]
        return total

    def predict_genotype(self, space: Any, genotype: Any) -> float:
        spec, _ = space.net_spec(genotype, 1000)
        return self.predict(spec, genotype.resolution)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tables": {
                str(k): {kk: {"mean": v} for kk, v in t.items()} for k, t in self.tables.items()
            },
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path


def _means(raw: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v["mean"] if isinstance(v, Mapping) else v) for k, v in raw.items()}


def load_table(path: str | Path) -> LatencyTable:
    """A table from OFA's YAML (``<r>_lookup_table.yaml``), a folder of them, or a JSON file
    written by :meth:`LatencyTable.save`; ``note10`` names OFA's Note10 folder."""
    if str(path) == "note10":
        path = data_path(NOTE10_DIR)
    p = Path(path)
    if not p.exists():
        hint = " (run `nas data fetch ofa-note10-lut`)" if str(path).endswith(NOTE10_DIR) else ""
        raise DataError(f"latency table {p} does not exist{hint}")
    if p.is_dir():
        tables: dict[int | None, dict[str, float]] = {}
        for f in sorted(p.glob("*_lookup_table.yaml")):
            tables[int(f.name.split("_")[0])] = _read_yaml(f)
        if not tables:
            raise DataError(f"{p} holds no <resolution>_lookup_table.yaml files")
        return LatencyTable(tables, str(p))
    if p.suffix in (".yaml", ".yml"):
        head = p.name.split("_")[0]
        return LatencyTable({int(head) if head.isdigit() else None: _read_yaml(p)}, str(p))
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p} is not a latency table: {e}") from None
    return LatencyTable(
        {(None if k == "None" else int(k)): _means(v) for k, v in data["tables"].items()}, str(p)
    )


def _read_yaml(path: Path) -> dict[str, float]:
    import yaml

    with open(path) as f:
        return _means(yaml.safe_load(f))


def note10_table() -> LatencyTable:
    """OFA's Samsung Note10 table (MobileNetV3 w1.2, resolutions 160..224 by 16)."""
    return load_table("note10")


# --------------------------------------------------------------------------------------
# Measuring a table on this machine
# --------------------------------------------------------------------------------------


def _layer_graph(info: dict[str, Any], bn: tuple[float, float]):
    from nas.search_spaces.ofa.network import OFA_CONVENTION, ConvSpec
    from nas.search_spaces.ofa.ops import conv_layer, mb_block

    from nas.graph import ArchGraph

    g = ArchGraph(convention=OFA_CONVENTION)
    x = g.add("input", shape=list(info["in"]))
    kind = info["kind"]
    s = info.get("spec")
    if kind in ("first_conv", "conv"):
        assert isinstance(s, ConvSpec)
        x = conv_layer(
            g,
            x,
            s.out_channels,
            s.kernel,
            s.stride,
            "layer",
            bias=s.bias,
            use_bn=s.use_bn,
            act=s.act,
            bn=bn,
        )
    elif kind == "block":
        x = mb_block(
            g,
            x,
            out_channels=s.out_channels,
            kernel=s.kernel,
            stride=s.stride,
            mid_channels=s.mid_channels,
            expand=s.expand_ratio != 1,
            act=s.act,
            use_se=s.use_se,
            residual=s.residual,
            scope="layer",
            bn=bn,
        )
    elif kind == "pool":
        x = g.add("global_pool", [x], keepdims=True)
    elif kind == "logits":
        x = g.add("dense", [x], out_features=s.out_features, bias=s.bias)
    elif kind == "pool_logits":
        x = g.add("global_pool", [x])
        x = g.add("dense", [x], out_features=s.out_features, bias=s.bias)
    g.add("output", [x])
    return g.finalize()


def time_layer(graph: Any, batch: int = 1, repeats: int = 20) -> float:
    """Median forward latency (ms) of an IR-built model of ``graph`` in evaluation mode."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nas.model import build_model

    model = build_model(graph)
    model.eval()
    fwd = nnx.jit(lambda m, x: m(x))
    x = jnp.zeros((batch, *graph.shape(graph.input)), jnp.float32)
    jax.block_until_ready(fwd(model, x))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fwd(model, x))
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def measure_table(
    space: Any,
    resolutions: Iterable[int],
    genotypes: Iterable[Any] | None = None,
    batch: int = 1,
    repeats: int = 20,
    progress: Any = None,
) -> LatencyTable:
    """Time every layer that the space's subnets (or just ``genotypes``) use, here.

    Args:
        space: an OFA space (``ofa`` or ``ofa-proxyless``).
        resolutions: input sizes to cover.
        genotypes: only the layers of these networks (default: every layer of the space at
            each resolution, through its largest and smallest settings of each unit).
        batch: images per timed forward (1, as OFA's phone tables).
        repeats: timed runs per layer (median).
    """
    from nas.search_spaces.ofa.network import D_CHOICES, E_CHOICES, KS_CHOICES, N_UNITS

    tables: dict[int | None, dict[str, float]] = {}
    for r in resolutions:
        if genotypes is not None:
            nets = [g for g in genotypes if g.resolution == r]
        else:
            # Every (unit, position, kernel, expand) layer appears in one of these networks:
            # all layers use kernel k and expand e, every unit at depth 4.
            n = space.genotype_cls.n_layers
            nets = [
                space.genotype_cls((k,) * n, (e,) * n, (max(D_CHOICES),) * N_UNITS, r)
                for k in KS_CHOICES
                for e in E_CHOICES
            ]
        table: dict[str, float] = {}
        for g in nets:
            spec, _ = space.net_spec(g, 1000)
            for key, info in layer_keys(spec, r):
                if key in table:
                    continue
                table[key] = time_layer(_layer_graph(info, spec.bn), batch, repeats)
                if progress:
                    progress(key, table[key])
        tables[r] = table
    return LatencyTable(tables, f"measured here (batch {batch})")
