"""Search efficiency of the platform's searchers on the NAS-Bench-201 CIFAR-10 table.

Each strategy (random, regularized evolution, TPE) asks for architectures and is told their
tabulated CIFAR-10 test accuracy (NATS-Bench, 200 epochs), directly through ask/tell: this
measures the searcher, not the storage or the execution layer. Searchers are deduplicated, so
a query is one new architecture. For every seed it records, within ``--budget`` queries, the
best accuracy found, whether the table's top 1% was reached, and the queries until the global
optimum and until any of the 15 best architectures; a second run with ``--long-budget``
queries measures queries to the optimum / the top 15 (medians count "not found" as the
budget).

Run from the project root: ``.venv/bin/python -m benchmarks.nb201_search``. The report is
printed and written to ``benchmarks/results/nb201_search.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

STRATEGIES = ("random", "evolution", "tpe")
EVOLUTION = {"population": 30, "tournament": 10}
DATASET = "cifar10"
TOP_K = 15
# A deduplicated searcher repeats an architecture when its retries run out (a converged
# evolution does); a repeat is a cached table look-up, not a query. Safety cap on asks:
MAX_ASKS_PER_QUERY = 20
OUT = Path(__file__).resolve().parent / "results" / "nb201_search.json"


def _run(strategy: str, seed: int, budget: int) -> dict[str, Any]:
    """Worker: one search of ``budget`` queries; the architectures in query order."""
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import load_table

    from nas.objectives import parse_objectives
    from nas.searchers import build_strategy

    table = load_table()
    space = get_space("nb201")
    searcher = build_strategy(
        strategy,
        space,
        parse_objectives("accuracy"),
        seed=seed,
        options=EVOLUTION if strategy == "evolution" else {},
    )
    t0 = time.perf_counter()
    archs: list[str] = []  # every ask, repeats included
    unique: set[str] = set()
    while len(unique) < budget and len(archs) < MAX_ASKS_PER_QUERY * budget:
        g = searcher.ask()
        arch = g.to_str()
        searcher.tell(g, (float(table[arch][DATASET]),))
        archs.append(arch)
        unique.add(arch)
    return {
        "strategy": strategy,
        "seed": seed,
        "budget": budget,
        "archs": archs,
        "seconds": time.perf_counter() - t0,
    }


class Targets:
    """What counts as a hit in the table."""

    def __init__(self, table: dict[str, dict[str, Any]]) -> None:
        self.acc = {a: float(r[DATASET]) for a, r in table.items()}
        ranked = sorted(self.acc.values(), reverse=True)
        self.n = len(ranked)
        self.optimum = ranked[0]
        self.optimal = {a for a, v in self.acc.items() if v == self.optimum}
        self.top1pct = ranked[self.n // 100 - 1]  # the 156th best accuracy
        self.top_k = set(sorted(self.acc, key=lambda a: -self.acc[a])[:TOP_K])
        self.top_k_floor = min(self.acc[a] for a in self.top_k)

    def describe(self) -> dict[str, Any]:
        return {
            "architectures": self.n,
            "global_optimum": self.optimum,
            "optimal_architectures": sorted(self.optimal),
            "top1pct_threshold": self.top1pct,
            "top1pct_rule": f"best >= the {self.n // 100}th best accuracy (ties included)",
            "top15_min_accuracy": self.top_k_floor,
        }

    def seed_metrics(self, asked: list[str], budget: int) -> dict[str, Any]:
        archs = distinct(asked)[:budget]
        asks = len(asked) if len(archs) < budget else asked.index(archs[-1]) + 1
        accs = [self.acc[a] for a in archs]
        first_opt = next((i + 1 for i, a in enumerate(archs) if a in self.optimal), None)
        first_top = next((i + 1 for i, a in enumerate(archs) if a in self.top_k), None)
        return {
            "best_accuracy": max(accs),
            "reached_top1pct": max(accs) >= self.top1pct,
            "queries_to_optimum": first_opt,
            "queries_to_top15": first_top,
            "queries": len(archs),
            "asks": asks,
            "first_repeat_at_query": first_repeat(asked),
        }


def distinct(asked: list[str]) -> list[str]:
    """The architectures in the order of their first ask."""
    return list(dict.fromkeys(asked))


def first_repeat(asked: list[str]) -> int | None:
    """The number of distinct queries made before the first repeated ask, or None."""
    seen: set[str] = set()
    for a in asked:
        if a in seen:
            return len(seen)
        seen.add(a)
    return None


def summarize(per_seed: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    best = [r["best_accuracy"] for r in per_seed]
    q_opt = [r["queries_to_optimum"] for r in per_seed]
    q_top = [r["queries_to_top15"] for r in per_seed]
    return {
        "seeds": len(per_seed),
        "budget": budget,
        "best_accuracy_mean": statistics.fmean(best),
        "best_accuracy_std": statistics.pstdev(best),
        "best_accuracy_median": statistics.median(best),
        "reached_top1pct": sum(r["reached_top1pct"] for r in per_seed),
        "found_optimum": sum(q is not None for q in q_opt),
        "found_top15": sum(q is not None for q in q_top),
        "median_queries_to_optimum": statistics.median(budget if q is None else q for q in q_opt),
        "median_queries_to_top15": statistics.median(budget if q is None else q for q in q_top),
        "all_seeds_reached_budget": all(r["queries"] == budget for r in per_seed),
        "asks_mean": statistics.fmean(r["asks"] for r in per_seed),
        "seeds_with_repeats": sum(r["first_repeat_at_query"] is not None for r in per_seed),
    }


def random_expectation(n: int, hits: int, budget: int) -> dict[str, Any]:
    """Uniform sampling without replacement: P(a hit within budget), median first hit."""

    def p_miss(q: int) -> float:  # C(n - hits, q) / C(n, q)
        return math.exp(
            math.lgamma(n - hits + 1)
            - math.lgamma(n - hits - q + 1)
            - math.lgamma(n + 1)
            + math.lgamma(n - q + 1)
        )

    median = next((q for q in range(1, n + 1) if 1 - p_miss(q) >= 0.5), None)
    return {"p_found_within_budget": 1 - p_miss(budget), "median_queries": median}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--long-budget", type=int, default=1000)
    ap.add_argument(
        "--tpe-long-seeds",
        type=int,
        default=None,
        help="cap the seeds of TPE's long run (its cost grows with trials); default: --seeds",
    )
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    ap.add_argument("--workers", type=int, default=2, help="spawned worker processes")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    console = Console()
    load_start = round(os.getloadavg()[0], 2)

    from nas.search_spaces.nb201 import load_table

    targets = Targets(load_table())
    long_seeds = {
        s: (args.tpe_long_seeds if s == "tpe" and args.tpe_long_seeds else args.seeds)
        for s in args.strategies
    }
    jobs = [(s, seed, args.long_budget) for s in args.strategies for seed in range(long_seeds[s])]
    jobs += [(s, seed, args.budget) for s in args.strategies for seed in range(args.seeds)]
    jobs.sort(key=lambda j: (j[0] != "tpe", -j[2]))  # the slowest first
    t0 = time.perf_counter()
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    ctx = multiprocessing.get_context("spawn")  # never fork (JAX may be alive elsewhere)
    with (
        ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool,
        Progress(console=console) as progress,
    ):
        task = progress.add_task(f"{len(jobs)} searches", total=len(jobs))
        futures = [pool.submit(_run, *j) for j in jobs]
        for fut in as_completed(futures):
            r = fut.result()
            runs[(r["strategy"], r["seed"], r["budget"])] = r
            progress.advance(task)
    wall = time.perf_counter() - t0

    results: dict[str, Any] = {}
    for s in args.strategies:
        entry: dict[str, Any] = {}
        for label, budget, n_seeds in (
            ("short", args.budget, args.seeds),
            ("long", args.long_budget, long_seeds[s]),
        ):
            per_seed = [
                {"seed": seed, **targets.seed_metrics(runs[(s, seed, budget)]["archs"], budget)}
                for seed in range(n_seeds)
            ]
            seconds = [runs[(s, seed, budget)]["seconds"] for seed in range(n_seeds)]
            entry[label] = {
                "summary": summarize(per_seed, budget),
                "seconds_per_seed_mean": statistics.fmean(seconds),
                "per_seed": per_seed,
            }
        # The searchers do not know the budget: a long run starts as the short run did.
        entry["long_prefix_equals_short_run"] = all(
            distinct(runs[(s, seed, args.long_budget)]["archs"])[: args.budget]
            == distinct(runs[(s, seed, args.budget)]["archs"])
            for seed in range(min(args.seeds, long_seeds[s]))
        )
        results[s] = entry

    report: dict[str, Any] = {
        "benchmark": "nb201_search",
        "dataset": DATASET,
        "table": "NATS-Bench topology, mean test accuracy after 200 epochs",
        "targets": targets.describe(),
        "query": (
            "one new architecture looked up in the table and told to the searcher; a repeat "
            "that the deduplicating wrapper lets through once its retries run out is told its "
            "cached result and not counted (see asks, first_repeat_at_query)"
        ),
        "seeds": args.seeds,
        "budget": args.budget,
        "long_budget": args.long_budget,
        "long_seeds": long_seeds,
        "median_rule": "queries to a target, 'not found' counted as the budget",
        "evolution_options": EVOLUTION,
        "tpe_options": {
            "sampler": "optuna TPESampler",
            "n_startup_trials": 10,
            "multivariate": True,
        },
        "results": results,
        "uniform_random_expectation": {
            "optimum": {
                str(b): random_expectation(targets.n, len(targets.optimal), b)
                for b in (args.budget, args.long_budget)
            },
            "top15": {
                str(b): random_expectation(targets.n, TOP_K, b)
                for b in (args.budget, args.long_budget)
            },
        },
        "time_s": {"wall": round(wall, 1)},
        "workers": args.workers,
        "machine": {
            "python": platform.python_version(),
            "cpus": multiprocessing.cpu_count(),
            # other work on the machine slows the workers: the 1-min load average at the
            # start and at the end of the run, to read the times with
            "load_average_1min": [load_start, round(os.getloadavg()[0], 2)],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    t = targets
    console.print(
        f"[bold]NAS-Bench-201 {DATASET} search[/]: optimum {t.optimum:.4f}% "
        f"({len(t.optimal)} archs), top-1% >= {t.top1pct:.4f}%, top-{TOP_K} >= "
        f"{t.top_k_floor:.4f}%"
    )
    short = Table(title=f"budget {args.budget} queries, {args.seeds} seeds")
    for col in ("strategy", "best acc mean±std", "median", "top-1%", "optimum", "top-15"):
        short.add_column(col, justify="right")
    for s in args.strategies:
        m = results[s]["short"]["summary"]
        short.add_row(
            s,
            f"{m['best_accuracy_mean']:.3f} ± {m['best_accuracy_std']:.3f}",
            f"{m['best_accuracy_median']:.3f}",
            f"{m['reached_top1pct']}/{m['seeds']}",
            f"{m['found_optimum']}/{m['seeds']}",
            f"{m['found_top15']}/{m['seeds']}",
        )
    console.print(short)
    long = Table(title=f"budget {args.long_budget} queries (median; not found = budget)")
    for col in (
        "strategy",
        "seeds",
        "queries to optimum",
        "found",
        "queries to top-15",
        "found",
        "asks (mean)",
    ):
        long.add_column(col, justify="right")
    for s in args.strategies:
        m = results[s]["long"]["summary"]
        long.add_row(
            s,
            str(m["seeds"]),
            f"{m['median_queries_to_optimum']:g}",
            f"{m['found_optimum']}/{m['seeds']}",
            f"{m['median_queries_to_top15']:g}",
            f"{m['found_top15']}/{m['seeds']}",
            f"{m['asks_mean']:.1f}",
        )
    console.print(long)
    console.print(f"time: {wall:.1f} s wall ({args.workers} workers); written to {args.out}")
    return report


if __name__ == "__main__":
    main()
