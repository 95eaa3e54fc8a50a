"""Queries until the optimum of NAS-Bench-201 CIFAR-10: predictor-guided search vs baselines.

Every strategy (random, regularized evolution P=30 S=10, TPE, the Neural Predictor and
BANANAS) asks for architectures through ``build_strategy`` (deduplicated, as ``nas search``
uses them) and is told their tabulated CIFAR-10 test accuracy (NATS-Bench, 200 epochs);
nothing else about the table reaches a searcher. A query is one new architecture; the
random architectures that the predictor-guided searchers train on count like any other.
A search stops once it has found both the global optimum (94.37%) and one of the 15 best
architectures, or after ``--budget`` queries; medians count "not found" as the budget.
The searchers do not know the budget, so stopping early changes nothing before the stop.

Run from the project root: ``.venv/bin/python -m benchmarks.nb201_predictor_search``
(about 30 min on 2 busy cores; ``--seeds 10`` for a quick look). The report is printed and
written to ``benchmarks/results/nb201_predictor_search.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

# label -> (strategy, options); "neural-predictor" is the paper's one-shot procedure with its
# GCN (the default surrogate), "-mlp" the same with the MLP ensemble, "-cascade" with the
# paper's classifier-then-regressor; the "+refit" variants re-rank the whole space after
# every 5 results.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "random": ("random", {}),
    "evolution": ("evolution", {"population": 30, "tournament": 10}),
    "tpe": ("tpe", {}),
    "neural-predictor": ("neural-predictor", {"n_train": 20}),
    "neural-predictor-cascade": (
        "neural-predictor",
        {"n_train": 20, "predictor_options": {"cascade": True}},
    ),
    "neural-predictor-mlp": ("neural-predictor", {"n_train": 20, "predictor": "ensemble"}),
    "neural-predictor+refit": ("neural-predictor", {"n_train": 10, "refit_every": 5}),
    "neural-predictor-mlp+refit": (
        "neural-predictor",
        {"n_train": 10, "refit_every": 5, "predictor": "ensemble"},
    ),
    "bananas": ("bananas", {}),
}
STRATEGIES = tuple(VARIANTS)
DATASET = "cifar10"
TOP_K = 15
TARGET = 48  # median queries to the optimum the predictor-guided searchers should reach
MAX_ASKS_PER_QUERY = 20  # a converged evolution repeats itself: a repeat is not a query
OUT = Path(__file__).resolve().parent / "results" / "nb201_predictor_search.json"


def _run(label: str, seed: int, budget: int) -> dict[str, Any]:
    """Worker: one search until both targets are found or ``budget`` queries are spent."""
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import load_table

    from nas.objectives import parse_objectives
    from nas.searchers import SearchContext, build_strategy

    acc = {a: float(r[DATASET]) for a, r in load_table().items()}
    optimum = max(acc.values())
    top = set(sorted(acc, key=lambda a: -acc[a])[:TOP_K])
    strategy, options = VARIANTS[label]
    searcher = build_strategy(
        strategy,
        get_space("nb201"),
        parse_objectives("accuracy"),
        seed=seed,
        options=options,
        context=SearchContext(budget=budget),
    )
    t0 = time.perf_counter()
    queried: list[str] = []
    seen: set[str] = set()
    q_opt = q_top = None
    asks = 0
    while len(queried) < budget and asks < MAX_ASKS_PER_QUERY * budget:
        g = searcher.ask()
        asks += 1
        arch = g.to_str()
        searcher.tell(g, (acc[arch],))
        if arch in seen:
            continue
        seen.add(arch)
        queried.append(arch)
        if q_top is None and arch in top:
            q_top = len(queried)
        if q_opt is None and acc[arch] == optimum:
            q_opt = len(queried)
        if q_opt is not None and q_top is not None:
            break
    return {
        "strategy": label,
        "seed": seed,
        "queries_to_optimum": q_opt,
        "queries_to_top15": q_top,
        "queries": len(queried),
        "asks": asks,
        "best_accuracy_at_50": max(acc[a] for a in queried[:50]),
        "seconds": time.perf_counter() - t0,
    }


def _quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [float(values[0])] * 3
    return [float(q) for q in statistics.quantiles(values, n=4, method="inclusive")]


def summarize(runs: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    q_opt = [budget if r["queries_to_optimum"] is None else r["queries_to_optimum"] for r in runs]
    q_top = [budget if r["queries_to_top15"] is None else r["queries_to_top15"] for r in runs]
    return {
        "seeds": len(runs),
        "median_queries_to_optimum": statistics.median(q_opt),
        "quartiles_queries_to_optimum": _quartiles(q_opt),
        "mean_queries_to_optimum": statistics.fmean(q_opt),
        "found_optimum": sum(r["queries_to_optimum"] is not None for r in runs),
        f"optimum_within_{TARGET}": sum(q <= TARGET for q in q_opt),
        "median_queries_to_top15": statistics.median(q_top),
        "quartiles_queries_to_top15": _quartiles(q_top),
        "found_top15": sum(r["queries_to_top15"] is not None for r in runs),
        "best_accuracy_at_50_mean": statistics.fmean(r["best_accuracy_at_50"] for r in runs),
        "seconds_per_seed_mean": statistics.fmean(r["seconds"] for r in runs),
        "seconds_per_query_mean": sum(r["seconds"] for r in runs)
        / max(1, sum(r["queries"] for r in runs)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--budget", type=int, default=1000, help="the most queries per search")
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--tpe-seeds", type=int, default=None, help="seeds for TPE (default --seeds)")
    ap.add_argument("--workers", type=int, default=2, help="spawned worker processes")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    seeds = {
        s: (args.tpe_seeds or args.seeds) if s == "tpe" else args.seeds for s in args.strategies
    }
    jobs = [(s, seed, args.budget) for s in args.strategies for seed in range(seeds[s])]
    jobs.sort(key=lambda j: j[0] not in ("tpe", "random"))  # the slowest first
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.strategies}
    ctx = multiprocessing.get_context("spawn")  # never fork (JAX may be alive elsewhere)
    with (
        ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool,
        Progress(console=console) as progress,
    ):
        task = progress.add_task(f"{len(jobs)} searches", total=len(jobs))
        for fut in as_completed([pool.submit(_run, *j) for j in jobs]):
            r = fut.result()
            runs[r["strategy"]].append(r)
            progress.advance(task)
    wall = time.perf_counter() - t0
    for s in runs:
        runs[s].sort(key=lambda r: r["seed"])

    from nas.search_spaces.nb201 import load_table

    accs = sorted((float(r[DATASET]) for r in load_table().values()), reverse=True)
    # Variants not run this time keep their earlier results (same budget only).
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = {
        k: v
        for k, v in earlier.get("results", {}).items()
        if earlier.get("budget") == args.budget and k not in args.strategies
    }
    results.update(
        {
            s: {
                "strategy": VARIANTS[s][0],
                "options": VARIANTS[s][1],
                "summary": summarize(runs[s], args.budget),
                "per_seed": runs[s],
            }
            for s in args.strategies
        }
    )
    seeds = {**{k: v["summary"]["seeds"] for k, v in results.items()}, **seeds}
    report: dict[str, Any] = {
        "benchmark": "nb201_predictor_search",
        "dataset": DATASET,
        "table": "NATS-Bench topology, mean test accuracy after 200 epochs",
        "global_optimum": accs[0],
        "optimal_architectures": accs.count(accs[0]),
        "top15_min_accuracy": accs[TOP_K - 1],
        "query": (
            "one new architecture (deduplicated searchers; the initial random architectures "
            "of the predictor-guided searchers count); a search stops when it has found both "
            "targets or after the budget"
        ),
        "median_rule": "queries to a target, 'not found' counted as the budget",
        "budget": args.budget,
        "seeds": seeds,
        "target_median_queries_to_optimum": TARGET,
        "results": results,
        "time_s": {"wall": round(wall, 1)},
        "loadavg": {"before": load_before, "after": os.getloadavg()},
        "workers": args.workers,
        "machine": {"python": platform.python_version(), "cpus": multiprocessing.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")

    table = Table(
        title=f"NB201 {DATASET}: queries to the optimum ({accs[0]:.2f}%) and to the top "
        f"{TOP_K} (median, not found = {args.budget})"
    )
    for col in ("strategy", "seeds", "to optimum", "IQR", "found", f"<= {TARGET}", "to top-15"):
        table.add_column(col, justify="right")
    for s in args.strategies:
        m = results[s]["summary"]
        q1, _, q3 = m["quartiles_queries_to_optimum"]
        table.add_row(
            s,
            str(m["seeds"]),
            f"{m['median_queries_to_optimum']:g}",
            f"{q1:g}-{q3:g}",
            f"{m['found_optimum']}/{m['seeds']}",
            f"{m[f'optimum_within_{TARGET}']}/{m['seeds']}",
            f"{m['median_queries_to_top15']:g}",
        )
    console.print(table)
    console.print(f"time: {wall:.1f} s wall ({args.workers} workers); written to {args.out}")
    return report


if __name__ == "__main__":
    main()
