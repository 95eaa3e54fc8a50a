"""Fresh candidates per second: genotype -> prediction for NB201 cells nobody has seen.

A search ranks architectures that are in no cache. This fits a predictor on 100 NB201
cells, then times ``predict`` on ``--cells`` cells drawn from the others with an empty
feature (and text) cache, so every step runs: genotype -> IR graph -> graph features (or
ONNX text and its embeddings) -> the model. A first, untimed batch of as many other fresh
cells pays the compilations; the timed batch is the steady state of a search. Stage times come
from a second pass over the same cells with each stage isolated.

"Predictions unchanged": the timed predictions are compared with the same predictor's
predictions for the same cells read back from the cache it just filled, and (GENNAPE) with
features built through the reference path, one graph at a time
(:func:`nas.predictors.features.graph_features` on :meth:`SearchSpace.to_graph`), while
the timed path splices NB201 cells into light graphs (:mod:`nas.predictors.lite`). Both
compare with ``np.array_equal``: the features and predictions are bit for bit the same.

Run on a quiet machine: ``.venv/bin/python -m benchmarks.fresh_candidates [--cells 2000]
[--predictors gennape onnxnet] [--workers 2]``; results in
``benchmarks/results/fresh_candidates.json``. ``--workers 2`` also times the same work split
over two spawned processes (one per core), with each worker's CPU time in the timed call
and its start-up cost (spawn and imports, loading the saved predictor, the warm-up call).
Every rate has a CPU-time twin (``cells_per_cpu_second...``), which a loaded machine
inflates less than wall time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "fresh_candidates.json"
GOALS = {"gennape": 1000.0, "onnxnet": 200.0}
TRAIN = 100


def _cells(seed: int, n: int, exclude: set[str]) -> list[str]:
    from nas.search_spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen = set(exclude)
    while len(out) < n:
        a = space.sample(rng).to_str()
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def _refs(archs: list[str]):
    from nas.predictors.features import ArchRef

    return [ArchRef("nb201", a, "cifar10") for a in archs]


def _fit(name: str, seed: int):
    from nas.predictors.base import get_predictor
    from nas.predictors.data import load_spec

    train = load_spec(f"nb201:cifar10:{TRAIN}", seed=seed)
    p = get_predictor(name, seed=seed)
    return p.fit(train.graphs, train.y, train.groups), {g.arch for g in train.graphs}


def _worker(name: str, folder: str, archs: list[str], warm: list[str], sent: float) -> dict:
    """In a spawned process with its own empty cache: load the saved predictor, warm up,
    time ``predict``; also what starting the worker cost (spawn, imports, loading the
    predictor, the warm-up call)."""
    started = time.time()
    os.environ["NAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="nas-fresh-")
    t = time.perf_counter()
    import jax  # noqa: F401  (imports timed apart from loading the predictor)
    from nas.predictors.base import load_predictor

    t0 = time.perf_counter()
    p = load_predictor(folder)
    t1 = time.perf_counter()
    p.predict(_refs(warm))
    t2, c2 = time.perf_counter(), time.process_time()
    mean, _ = p.predict(_refs(archs))
    return {
        "spawn_s": started - sent,
        "import_s": t0 - t,
        "load_s": t1 - t0,
        "warm_s": t2 - t1,
        "seconds": time.perf_counter() - t2,
        "cpu_seconds": time.process_time() - c2,
        "mean": mean.tolist(),
    }


def measure(name: str, cells: int, workers: int, seed: int) -> dict[str, Any]:
    p, seen = _fit(name, seed)
    archs = _cells(seed + 1, cells, seen)
    # GENNAPE: as many other fresh cells as the timed batch (that call compiles the batch
    # shapes); ONNX-Net's encoder shapes do not grow with the batch.
    warm = _cells(seed + 2, cells if name == "gennape" else 64, seen | set(archs))
    p.predict(_refs(warm))  # compilations
    t0, c0 = time.perf_counter(), time.process_time()
    fresh, _ = p.predict(_refs(archs))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    again, _ = p.predict(_refs(archs))  # from the cache just filled
    row: dict[str, Any] = {
        "predictor": name,
        "cells": cells,
        "seconds": seconds,
        "cells_per_second": cells / seconds,
        "cpu_seconds": cpu,
        "cells_per_cpu_second": cells / cpu,
        "goal_cells_per_second": GOALS.get(name),
        "same_as_cached": bool(np.array_equal(fresh, again)),
        "stages_ms_per_cell": stages(name, archs[:200], p),
    }
    if name == "gennape":
        row["same_as_reference_features"] = reference_check(p, archs[:200])
    if workers > 1:
        row.update(_processes(name, p, archs, warm, fresh, workers))
    return row


def _processes(name: str, p, archs, warm, fresh, workers: int) -> dict[str, Any]:
    """The same cells split over ``workers`` spawned processes (one per core): the timed
    calls' throughput and CPU time, and each worker's start-up cost (spawn and imports,
    loading the saved predictor, a warm-up call on as many other fresh cells as its share,
    which compiles its batch shapes)."""
    cells = len(archs)
    with tempfile.TemporaryDirectory() as tmp:
        p.save(tmp)
        parts = [archs[i::workers] for i in range(workers)]
        # GENNAPE's warm-up compiles its share's batch shapes: as many cells as the share.
        split = name == "gennape"
        warms = [warm[i::workers] if split else warm for i in range(workers)]
        ctx = multiprocessing.get_context("spawn")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with ctx.Pool(workers) as pool:
            args = [(name, tmp, part, w, time.time()) for part, w in zip(parts, warms, strict=True)]
            res = pool.starmap(_worker, args)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    merged = np.empty(cells)
    for i in range(workers):
        merged[i::workers] = res[i].pop("mean")
    cpu = sum(r["cpu_seconds"] for r in res)
    return {
        f"cells_per_second_{workers}_processes": cells / max(r["seconds"] for r in res),
        f"cells_per_cpu_second_{workers}_processes": cells / cpu,
        "process_pool_wall_seconds": wall,
        "process_pool_cpu_seconds": (after.ru_utime + after.ru_stime)
        - (before.ru_utime + before.ru_stime),
        "workers": res,
        "processes_same_predictions": bool(np.allclose(merged, fresh, rtol=0, atol=1e-5)),
        "processes_max_abs_difference": float(np.max(np.abs(merged - fresh))),
        "processes_bit_identical": bool(np.array_equal(merged, fresh)),
    }


def stages(name: str, archs: list[str], model=None) -> dict[str, float]:
    """CPU milliseconds per cell of each stage, on fresh copies of the cells (no cache;
    GENNAPE's ``model``: ``model`` on features already built); ONNX-Net's also the
    distinct texts per cell its embedding stage encodes."""
    from nas.predictors.features import graph_features
    from nas.search_spaces import get_space

    space = get_space("nb201")
    t0 = time.process_time()
    genotypes = [space.parse(a) for a in archs]
    graphs = [space.to_graph(g, "cifar10") for g in genotypes]
    t1 = time.process_time()
    out = {"parse_and_graph": (t1 - t0) / len(archs) * 1e3}
    if name == "gennape":
        from nas.predictors.features import _round
        from nas.predictors.lite import lite_graph

        for g in graphs:
            graph_features(g)
        t2 = time.process_time()
        out["graph_features"] = (t2 - t1) / len(archs) * 1e3
        # The path fresh references take: the light graph (nas.predictors.lite), then the
        # same feature code.
        lite = [lite_graph("nb201", a, "cifar10") for a in archs]
        t3 = time.process_time()
        out["light_graph"] = (t3 - t2) / len(archs) * 1e3
        feats = [_round(graph_features(g)) for g in lite]
        t4 = time.process_time()
        out["graph_features_on_light_graph"] = (t4 - t3) / len(archs) * 1e3
        # The model on ready features (prior, packing, the jitted forward pass).
        model._run(_refs(archs), feats)  # compiles this batch's shapes
        t4 = time.process_time()
        model._run(_refs(archs), feats)
        out["model"] = (time.process_time() - t4) / len(archs) * 1e3
    elif _onnxnet_mode() == "nodes":
        out.update(_node_stages(archs))
    else:
        from nas.predictors.onnxnet.encoder import MiniLM
        from nas.predictors.onnxnet.text import describe_onnx

        from nas.onnx_export import graph_to_onnx

        enc = MiniLM.load()

        def budget(text: str) -> int:  # as the predictor's text store counts
            return enc.count_tokens([text])[0] - 2

        t1 = time.process_time()
        protos = [graph_to_onnx(g, fill="none", check=False) for g in graphs]
        t2 = time.process_time()
        chunks = [describe_onnx(p, budget, enc.max_tokens - 2) for p in protos]
        t3 = time.process_time()
        # Every distinct text of these cells embedded afresh (no cache): what a search pays
        # for texts it has not seen (the stats and cell texts of a new cell are new).
        texts = sorted({c.text for cs in chunks for c in cs})
        enc.encode(texts)
        t4 = time.process_time()
        out["onnx_export"] = (t2 - t1) / len(archs) * 1e3
        out["text"] = (t3 - t2) / len(archs) * 1e3
        out["embed_new_texts"] = (t4 - t3) / len(archs) * 1e3
        out["distinct_texts_per_cell"] = len(texts) / len(archs)
    return out


def _onnxnet_mode() -> str:
    """The text mode of the default ONNX-Net predictor (the one :func:`_fit` builds)."""
    from nas.predictors.onnxnet.predictor import OnnxNetOptions

    return OnnxNetOptions().mode


def _node_stages(archs: list[str]) -> dict[str, float]:
    """ONNX-Net ``nodes`` mode: CPU ms per cell of the light graph, the node lines and the
    pooling over already-embedded lines (a known space's lines are all cached), and the
    distinct lines per cell that were new to a fresh store (after the other cells)."""
    from nas.predictors.lite import lite_graph
    from nas.predictors.onnxnet.nodes import NodeTextStore, node_lines, pool

    t0 = time.process_time()
    graphs = [lite_graph("nb201", a, "cifar10") for a in archs]
    t1 = time.process_time()
    described = [node_lines(g) for g in graphs]
    t2 = time.process_time()
    store = NodeTextStore(None)
    half = len(archs) // 2
    store.features(_refs(archs[:half]))
    known = len(store.vectors)
    store.features(_refs(archs[half:]))
    t3 = time.process_time()
    for lines, snd, rcv in described:
        pool(np.stack([store.vectors[x] for x in lines]), snd, rcv)
    t4 = time.process_time()
    return {
        "light_graph": (t1 - t0) / len(archs) * 1e3,
        "node_lines": (t2 - t1) / len(archs) * 1e3,
        "pool_cached_lines": (t4 - t3) / len(archs) * 1e3,
        "distinct_lines": len(store.vectors),
        "new_lines_per_cell_in_second_half": (len(store.vectors) - known) / (len(archs) - half),
        "lines_per_cell": float(np.mean([len(d[0]) for d in described])),
    }


def reference_check(p, archs: list[str]) -> bool:
    """Whether GENNAPE's outputs from the features the fast path cached equal those from
    features built by the reference path, one graph at a time and never cached
    (:func:`nas.predictors.features.graph_features` on :meth:`SearchSpace.to_graph`)."""
    from nas.predictors.features import FeatureStore, features
    from nas.search_spaces import get_space

    space = get_space("nb201")
    graphs = [space.to_graph(space.parse(a), "cifar10") for a in archs]
    reference = FeatureStore(False).get(graphs)
    cached = features(_refs(archs))
    same = all(
        np.array_equal(a.nodes, b.nodes)
        and np.array_equal(a.senders, b.senders)
        and np.array_equal(a.globals, b.globals)
        for a, b in zip(reference, cached, strict=True)
    )
    return same and bool(np.array_equal(p._run(graphs, reference)[0], p._run(graphs, cached)[0]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--predictors", nargs="+", default=["gennape", "onnxnet"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT, help="results file (merged into)")
    args = ap.parse_args(argv)
    rows = []
    for name in args.predictors:
        with tempfile.TemporaryDirectory() as cache:
            os.environ["NAS_CACHE_DIR"] = cache  # nothing cached: every cell is fresh
            import nas.predictors.features as pf

            pf._DEFAULT = None
            load = os.getloadavg()[0]
            row = measure(name, args.cells, args.workers, args.seed)
            row["loadavg_before"] = load
            rows.append(row)
            print(json.dumps(row, indent=1), flush=True)
    out = args.out
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.update({r["predictor"]: r for r in rows})
    doc["machine"] = {"cpus": os.cpu_count()}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
