"""Graph features in the style of GRAF (Kadlecova et al. 2024), from the compact graph.

GRAF describes an architecture by simple, interpretable graph statistics (operation counts,
the shortest and longest input-output paths through given operation types, node degrees)
and lets a tabular model do the rest; with zero-cost proxies beside them they are the inputs
of the transferable surrogates of Kadlecova et al. (2025). This module computes such
statistics from :class:`~nas.predictors.features.GraphFeatures` (the live, fused, repeat-collapsed
graph of :func:`~nas.predictors.features.graph_features`), so they exist for every space of the
IR and for imported ONNX models alike. Counts weigh each node by the copies its collapsed
block stands for.

Across benchmark families the absolute values of most statistics differ by construction
(NB101 networks are ten times the size of NB201's), so :func:`standardise_by_family` turns
each feature into its z-score within the architecture's family, computed from that
family's architectures without their labels (any unlabelled sample of the space does).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from nas.predictors.features import CATEGORIES, GLOBALS, NUMERIC, GraphFeatures

_COL = {name: len(CATEGORIES) + i for i, name in enumerate(NUMERIC)}
_COUNTED = ("conv", "conv_1x1", "conv_dw", "conv_group", "dense", "max_pool", "avg_pool",
            "add", "mul", "concat")  # fmt: skip
_MAC_KINDS = ("conv", "conv_1x1", "conv_dw", "conv_group", "dense")
_SPATIAL = ("conv", "conv_dw", "conv_group")
_GLOBALS = ("log_params", "log_flops", "log_nodes", "log_convs", "longest_conv_path",
            "shortest_conv_path", "mean_log_channels", "share_1x1", "share_dw", "share_pool",
            "spatial_depth")  # fmt: skip
"""The graph-level features kept (input size and class count are constant per family)."""

NAMES = (
    *(f"log_count_{c}" for c in _COUNTED),
    *(f"mac_share_{c}" for c in _MAC_KINDS),
    "log_live_macs",
    "log_paths",
    "skip_path_fraction",
    "longest_spatial_path",
    "shortest_spatial_path",
    "mean_merge_fan_in",
    "max_fan_out",
    "mean_kernel",
    "stride2_count",
    *_GLOBALS,
)
"""The feature names, in column order."""


def graf_features(feats: Sequence[GraphFeatures]) -> np.ndarray:
    """One row of :data:`NAMES` per graph."""
    return np.stack([_one(f) for f in feats]) if feats else np.zeros((0, len(NAMES)))


def _one(f: GraphFeatures) -> np.ndarray:
    cats = f.nodes[:, : len(CATEGORIES)].argmax(1)
    names = [CATEGORIES[c] for c in cats]
    copies = np.exp2(3.0 * f.nodes[:, _COL["repeat"]])
    share = f.nodes[:, _COL["flops_share"]] / 10.0 * copies
    counts = [np.log1p(copies[[n == c for n in names]].sum()) for c in _COUNTED]
    total = max(share.sum(), 1e-9)
    mac = [share[[n == c for n in names]].sum() / total for c in _MAC_KINDS]
    live = f.globals[GLOBALS.index("log_flops")] * 9.0 * np.log(10.0) + np.log(total)
    paths = _paths(f, names)
    n = f.num_nodes
    indeg = np.bincount(f.receivers, minlength=n)
    outdeg = np.bincount(f.senders, minlength=n)
    merges = [indeg[i] for i in range(n) if names[i] in ("add", "concat", "mul")]
    convs = [i for i in range(n) if names[i] in _MAC_KINDS[:-1]]
    kernel = f.nodes[convs, _COL["kernel"]] * 7.0 if convs else np.zeros(1)
    w = share[convs] if convs else np.ones(1)
    stride2 = (f.nodes[:, _COL["stride2"]] * copies).sum()
    glob = [f.globals[GLOBALS.index(g)] for g in _GLOBALS]
    return np.array(
        [
            *counts,
            *mac,
            live,
            *paths,
            float(np.mean(merges)) if merges else 1.0,
            float(outdeg.max()) if n else 0.0,
            float((kernel * w).sum() / max(w.sum(), 1e-9)),
            float(np.log1p(stride2)),
            *glob,
        ],
        np.float64,
    )


def _paths(f: GraphFeatures, names: list[str]) -> tuple[float, float, float, float]:
    """``(log number of input-output paths, share of paths without a conv, longest and
    shortest path in spatial convs)`` over the compact DAG (nodes are topologically
    ordered; node 0 is the input, the last node the output)."""
    n = f.num_nodes
    preds: list[list[int]] = [[] for _ in range(n)]
    for s, r in zip(f.senders.tolist(), f.receivers.tolist(), strict=True):
        preds[r].append(s)
    count = np.zeros(n)
    skip = np.zeros(n)  # paths from the input that meet no conv
    longest = np.zeros(n)
    shortest = np.zeros(n)
    for v in range(n):
        spatial = float(names[v] in _SPATIAL)
        is_conv = names[v] in _MAC_KINDS
        if not preds[v]:
            count[v], skip[v] = 1.0, 0.0 if is_conv else 1.0
            longest[v] = shortest[v] = spatial
            continue
        count[v] = sum(count[p] for p in preds[v])
        skip[v] = 0.0 if is_conv else sum(skip[p] for p in preds[v])
        longest[v] = max(longest[p] for p in preds[v]) + spatial
        shortest[v] = min(shortest[p] for p in preds[v]) + spatial
    out = n - 1
    total = max(count[out], 1.0)
    return float(np.log(total)), float(skip[out] / total), float(longest[out]), float(shortest[out])


def standardise_by_family(x: np.ndarray, families: Sequence[str]) -> np.ndarray:
    """Each column's z-score within each family (a constant column becomes 0)."""
    out = np.zeros_like(x, np.float64)
    fam = np.asarray(list(families))
    for name in np.unique(fam):
        sel = fam == name
        mu = x[sel].mean(0)
        sd = x[sel].std(0)
        out[sel] = (x[sel] - mu) / np.where(sd > 1e-9, sd, 1.0)
    return out


def rank_by_family(x: np.ndarray, families: Sequence[str]) -> np.ndarray:
    """Each column's rank within each family, scaled to [-1, 1] (ties share their mean
    rank; a constant column becomes 0). Ranks need no labels, and unlike z-scores they do
    not care how a statistic is distributed in a family: what transfers is the order."""
    from scipy.stats import rankdata

    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    fam = np.asarray(list(families))
    for name in np.unique(fam):
        sel = np.flatnonzero(fam == name)
        if len(sel) < 2:
            continue
        r = rankdata(x[sel], axis=0)
        out[sel] = 2.0 * (r - 1.0) / (len(sel) - 1.0) - 1.0
    return out


PROXIES = ("synflow", "jacov", "snip", "grad_norm", "naswot")
"""Zero-cost proxies :func:`proxy_scores` computes (:mod:`nas.predictors.zerocost.proxies`);
the data-dependent ones score one batch of :func:`~nas.predictors.zerocost.proxies.digits_batch`
(16 images, seed 0)."""


def proxy_scores(
    graphs: Sequence, names: Sequence[str], *, progress: bool = False, save_every: int = 200
) -> np.ndarray:
    """``(len(graphs), len(names))`` zero-cost proxy scores, cached per architecture in
    ``$NAS_CACHE_DIR/zerocost-NAME-v1.json`` (key ``space|dataset|arch``), so repeated
    benchmark folds and seeds compute each score once. Graphs that do not say which space
    built them are scored without caching."""
    from nas.predictors.features import as_graph, cache_dir, ref_of

    from nas.errors import ConfigError

    bad = [n for n in names if n not in PROXIES]
    if bad:
        raise ConfigError(f"unknown zero-cost proxy {bad[0]!r}; known: {', '.join(PROXIES)}")
    out = np.zeros((len(graphs), len(names)))
    for j, name in enumerate(names):
        path = cache_dir() / f"zerocost-{name}-v1.json"
        cache = json.loads(path.read_text()) if path.exists() else {}
        todo = 0
        for i, g in enumerate(_progress(graphs, f"proxy {name}", progress)):
            ref = ref_of(g)
            key = f"{ref.space}|{ref.dataset}|{ref.arch}" if ref is not None else None
            if key is None or key not in cache:
                value = _proxy(name, as_graph(g))
                if key is None:
                    out[i, j] = value
                    continue
                cache[key], todo = value, todo + 1
                if todo % save_every == 0:
                    _save_json(path, cache)
            out[i, j] = cache[key]
        if todo:
            _save_json(path, cache)
    return out


def _proxy(name: str, graph) -> float:
    from nas.predictors.zerocost import proxies

    if name == "synflow":
        return proxies.synflow(graph)
    x, labels = proxies.digits_batch(tuple(graph.shape(graph.input)), 16, 0)
    if name in ("snip", "grad_norm"):
        return getattr(proxies, name)(graph, x, labels)
    return getattr(proxies, name)(graph, x)


def _save_json(path, obj) -> None:
    """Write ``obj`` atomically (other processes may read the cache meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _progress(items: Sequence, what: str, show: bool):
    if not show:
        return items
    from rich.progress import track

    return track(items, description=what, transient=True)
