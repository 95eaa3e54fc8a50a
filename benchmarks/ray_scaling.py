"""Scaling of the Ray execution layer: start-up, per-trial overhead, training throughput.

Measures, on this machine:

1. **Start-up**: ``RayExecutor`` construction with 1 and 2 workers (import ray + start a
   local instance + actors pinned and ready), and its shutdown.
2. **Per-trial overhead** with a trivial evaluator (the synthetic one without cost counting,
   ~0 ms of work):
   - executor round trip: one job submitted and its result back, one at a time, through
     1 Ray actor (what Ray adds to every evaluation);
   - the whole search loop (searcher + SQLite study + execution) per trial, in process and
     on 1 Ray actor, alternated over several rounds (medians); the difference is the Ray
     path's overhead inside a real search.
3. **Throughput of CPU-bound training**: the ``train`` evaluator on scikit-learn digits
   (NB201 cells, ``--steps`` optimiser steps, a compile per architecture as in a real
   search) over the same ``--trials`` architectures with 1 and 2 pinned Ray workers, and,
   as a reference, in this process unpinned (XLA may use every core). Each configuration
   first warms every worker up on other architectures (JAX start-up is not counted).

The machine may be shared with other jobs: the load average is recorded before and after
each measurement, and numbers taken under load are not the machine's capability.

Run from the project root: ``.venv/bin/python -m benchmarks.ray_scaling`` (about 10 minutes
on 2 quiet cores). The report is printed and written to
``benchmarks/results/ray_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "results" / "ray_scaling.json"


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _space():
    from nas.search_spaces import get_space

    return get_space("nb201")


def _archs(n: int, seed: int) -> list:
    space = _space()
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    while len(out) < n:
        g = space.sample(rng)
        out.setdefault(g.to_str(), g)
    return list(out.values())


def startup(workers: int) -> dict[str, Any]:
    from nas.evaluators.synthetic import SyntheticEvaluator
    from nas.execution import RayExecutor

    before = load()
    t0 = time.perf_counter()
    ex = RayExecutor(SyntheticEvaluator(_space(), options={"cost": False}), workers)
    ready = time.perf_counter() - t0
    t1 = time.perf_counter()
    ex.close()
    return {
        "workers": workers,
        "ray_init_s": round(ex.init_seconds, 3),
        "ready_s": round(ready, 3),
        "shutdown_s": round(time.perf_counter() - t1, 3),
        "load_before": before,
        "load_after": load(),
    }


def round_trip(n: int) -> dict[str, Any]:
    """One trivial job at a time through one actor: submit -> result."""
    from nas.evaluators.synthetic import SyntheticEvaluator
    from nas.execution import Job, RayExecutor

    archs = _archs(n + 10, seed=1)
    with tempfile.TemporaryDirectory(prefix="nasbench-") as tmp:
        ex = RayExecutor(SyntheticEvaluator(_space(), options={"cost": False}), 1)
        before = load()
        times = []
        try:
            for i, g in enumerate(archs):
                t0 = time.perf_counter()
                ex.submit(Job(g, Path(tmp) / str(i)))
                while not ex.wait(timeout=30):
                    pass
                if i >= 10:  # the first jobs warm the actor up
                    times.append(time.perf_counter() - t0)
        finally:
            ex.close()
    return {
        "trials": n,
        "mean_ms": round(1e3 * statistics.mean(times), 2),
        "median_ms": round(1e3 * statistics.median(times), 2),
        "p90_ms": round(1e3 * float(np.percentile(times, 90)), 2),
        "load_before": before,
        "load_after": load(),
    }


def search_loop(n: int, rounds: int = 3) -> dict[str, Any]:
    """Whole searches (random, SQLite, trivial evaluator), in process and on one Ray actor,
    alternated ``rounds`` times; the median milliseconds per trial of each."""
    from nas.config import SearchConfig
    from nas.evaluators.synthetic import SyntheticEvaluator
    from nas.execution import RayExecutor
    from nas.search import run_search

    space = _space()
    evaluator = SyntheticEvaluator(space, options={"cost": False})
    ex = RayExecutor(evaluator, 1)
    per_trial: dict[str, list[float]] = {"in process": [], "ray x1": []}
    before = load()
    try:
        for _ in range(rounds):
            for where, executor in (("in process", None), ("ray x1", ex)):
                with tempfile.TemporaryDirectory(prefix="nasbench-") as tmp:
                    t0 = time.perf_counter()
                    config = SearchConfig(
                        space=space.name,
                        strategy="random",
                        evaluator="synthetic",
                        budget=n,
                        out=str(Path(tmp) / "run"),
                        progress=False,
                    )
                    run_search(config, evaluator=evaluator, executor=executor)
                    per_trial[where].append(1e3 * (time.perf_counter() - t0) / n)
    finally:
        ex.close()
    med = {k: round(statistics.median(v), 2) for k, v in per_trial.items()}
    return {
        "trials_per_search": n,
        "rounds": rounds,
        "per_trial_ms_median": med,
        "per_trial_ms_all": {k: [round(x, 2) for x in v] for k, v in per_trial.items()},
        "ray_path_ms_per_trial": round(med["ray x1"] - med["in process"], 2),
        "load_before": before,
        "load_after": load(),
    }


def training(workers: int | None, archs: list, warm: list, steps: int) -> dict[str, Any]:
    """Train ``archs`` with ``workers`` pinned Ray actors (None: in this process)."""
    from nas.evaluators import get_evaluator
    from nas.execution import InProcessExecutor, Job, RayExecutor

    evaluator = get_evaluator("train", _space(), "digits", steps=steps)
    ex = RayExecutor(evaluator, workers) if workers else InProcessExecutor(evaluator)
    try:
        with tempfile.TemporaryDirectory(prefix="nasbench-") as tmp:
            root = Path(tmp)
            # Warm-up: every worker starts JAX on an architecture not measured.
            for i, g in enumerate(warm[: ex.capacity]):
                ex.submit(Job(g, root / f"warm{i}"))
            while ex.running:
                ex.wait(timeout=60)
            before = load()
            queue = list(archs)
            t0 = time.perf_counter()
            results = []
            submitted = 0
            while queue or ex.running:
                while queue and ex.running < ex.capacity:
                    ex.submit(Job(queue.pop(0), root / str(submitted)))
                    submitted += 1
                results += ex.wait(timeout=60)
            wall = time.perf_counter() - t0
    finally:
        ex.close()
    ok = [c for c in results if c.result.ok]
    return {
        "where": f"ray x{workers} pinned" if workers else "in process, unpinned",
        "trials": len(results),
        "ok": len(ok),
        "wall_s": round(wall, 2),
        "trials_per_min": round(60 * len(results) / wall, 3),
        "mean_eval_s": round(statistics.mean(c.result.duration for c in results), 2),
        "cores": sorted({c.worker.get("core") for c in results}, key=str),
        "load_before": before,
        "load_after": load(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--trials",
        type=int,
        default=24,
        help="architectures trained per setting (few: tail effects)",
    )
    p.add_argument("--steps", type=int, default=60, help="training steps per architecture")
    p.add_argument("--overhead-trials", type=int, default=200)
    p.add_argument("--loop-trials", type=int, default=60)
    p.add_argument(
        "--skip-training",
        action="store_true",
        help="only start-up and overhead (training numbers already in --out are kept)",
    )
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    report: dict[str, Any] = {
        "benchmark": "ray_scaling",
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "note": (
            "This machine is shared with other jobs; every number has the 1/5/15-minute load "
            "averages taken just before and after it. Under load the numbers understate "
            "what the code does on a quiet machine."
        ),
        "load_at_start": load(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print("start-up ...", flush=True)
    report["startup"] = [startup(1), startup(2)]
    print(report["startup"], flush=True)
    print("per-trial overhead ...", flush=True)
    search_loop(10, rounds=1)  # imports and the first study creation are not per-trial costs
    report["overhead"] = {
        "round_trip_1_actor": round_trip(args.overhead_trials),
        "search_loop": search_loop(args.loop_trials),
    }
    print(report["overhead"], flush=True)
    if args.skip_training and args.out.exists():  # keep the training numbers measured before
        previous = json.loads(args.out.read_text()).get("training")
        if previous:
            report["training"] = previous
    if not args.skip_training:
        archs = _archs(args.trials + 2, seed=7)
        warm, measured = archs[:2], archs[2:]
        print("training throughput ...", flush=True)
        one = training(1, measured, warm, args.steps)
        print(one, flush=True)
        two = training(2, measured, warm, args.steps)
        print(two, flush=True)
        base = training(None, measured, warm, args.steps)  # last: JAX starts in this process
        print(base, flush=True)
        report["training"] = {
            "evaluator": f"train on digits, NB201, {args.steps} steps, batch 64",
            "settings": [one, two, base],
            "speedup_2_vs_1_workers": round(two["trials_per_min"] / one["trials_per_min"], 3),
            "speedup_2_workers_vs_in_process": round(
                two["trials_per_min"] / base["trials_per_min"], 3
            ),
            "target_speedup": 1.8,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    report["targets"] = {"speedup_2_vs_1": ">= 1.8", "ray_path_overhead_ms": "< 50"}
    report["load_at_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
