"""OFA specialisation against plain evolution, on one trained supernet, at equal wall time.

Trains (or loads, from ``--out``) one OFA supernet with the ``supernet`` evaluator, then, for
each search seed, runs two searches under the same latency limit for the same wall-clock
time, every candidate's accuracy measured on the supernet the same way (inherited weights,
BatchNorm recalibrated on the same fixed images, top-1 on the whole validation split, at its
resolution):

- ``ofa-evolution``: OFA's specialisation (:mod:`nas.searchers.ofa_evolution`: an accuracy
  predictor fitted on ``--samples`` supernet-scored random subnets within the limit,
  evolution on the predictor, then its best predicted subnets scored in order);
- ``evolution``: regularized evolution whose every candidate is scored on the supernet.

Both are built as the search loop builds them (:func:`nas.searchers.build_strategy`:
deduplicated, and limited by the same latency function). Latency comes from a per-layer
table (``--latency-table``: ``note10`` or a file from ``nas latency-table``); a genotype at a
resolution the table does not price is outside the limit (OFA's finder, likewise, samples
only its table's resolutions). The programs that score a resolution are compiled before the
clocks start, and a resolution met for the first time is compiled off the clock, so neither
search pays a compile the other does not (the predictor's fit is compiled beforehand too).
The predictor's fitting and evolution run on the clock: they are its method's cost.

The result per seed is the best measured accuracy within the limit and its latency; the
summary is the median over seeds. A quality comparison under equal wall time: run it on a
quiet machine so that both searches get the same share of it (the load average is recorded).

Run: ``.venv/bin/python -m benchmarks.ofa_specialisation --latency-table FILE --max-latency MS
[--steps 400] [--batch-size 32] [--resolutions 128] [--minutes 4] [--seeds 0,1,2]``; writes
``benchmarks/results/ofa_specialisation.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


class Clock:
    """Wall time spent on one search, with compiles taken off it."""

    def __init__(self) -> None:
        self.start, self.off = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.start - self.off


def _score(ev, g, compiled: set[int], clock: Clock) -> float:
    """``g``'s accuracy on the supernet; a resolution's first scoring (its compile) is run
    once off the clock, then the timed scoring costs what every later one does."""
    r = int(g.resolution)
    if r not in compiled:
        t = time.perf_counter()
        ev.accuracy(g)
        compiled.add(r)
        clock.off += time.perf_counter() - t
    return ev.accuracy(g)


def _run(name, strategy, ev, latency, compiled, seconds) -> dict:
    """Ask, score on the supernet, tell, until ``seconds`` of search time have passed."""
    clock = Clock()
    trace, best, scored = [], (-math.inf, None, None), 0
    while clock.elapsed() < seconds:
        g = strategy.ask()
        acc = _score(ev, g, compiled, clock)
        strategy.tell(g, (acc,))
        scored += 1
        if acc > best[0]:
            best = (acc, g, latency(g)["latency"])
            trace.append({"seconds": round(clock.elapsed(), 2), "accuracy": acc})
    return {
        "strategy": name,
        "best_accuracy": best[0],
        "best_latency_ms": best[2],
        "best_arch": best[1].to_str() if best[1] is not None else None,
        "scored": scored,
        "seconds": round(clock.elapsed(), 2),
        "compile_seconds_off_clock": round(clock.off, 2),
        "trace": trace,
    }


def _latency_fn(space, table):
    """Latency (ms) by the table, alone (what both searches' limit needs); a resolution the
    table does not price is infinitely slow, as in the evaluator's costs."""

    def latency(g) -> dict[str, float]:
        if not table.prices(int(g.resolution)):
            return {"latency": math.inf}
        return {"latency": table.predict_genotype(space, g)}

    return latency


def _compile_predictor_fit(space, g, samples: int) -> None:
    """Compile the predictor's fit for ``samples`` rows before the clocks start (the first
    search to fit would otherwise pay a compile the later ones do not)."""
    import numpy as np

    from nas.searchers.ofa_evolution import AccuracyPredictor, OFAEvolutionOptions

    o = OFAEvolutionOptions()
    x = np.stack([space.encode(g)] * samples)
    AccuracyPredictor(o.hidden, o.fit_steps, 0).fit(x, np.arange(samples, dtype=np.float64))


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--resolutions", default="128", help="training resolutions")
    p.add_argument("--latency-table", required=True, help="note10 or a table file")
    p.add_argument("--max-latency", type=float, required=True, help="ms")
    p.add_argument("--minutes", type=float, default=4.0, help="per search")
    p.add_argument("--samples", type=int, default=0, help="0: half the expected scorings")
    p.add_argument("--seeds", default="0,1,2", help="search seeds (one supernet, seed 0)")
    p.add_argument("--out", default="runs/ofa_specialisation")
    p.add_argument(
        "--result", default=str(Path(__file__).parent / "results" / "ofa_specialisation.json")
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = _parse(argv)
    from nas import memory

    memory.reexec()  # glibc malloc tuned as the nas CLI runs (nas.memory); before JAX starts
    from nas.search_spaces import get_space

    from nas.evaluators.oneshot import SupernetEvaluator
    from nas.objectives import parse_objectives
    from nas.searchers import SearchContext, build_strategy

    space = get_space("ofa")
    options = {
        "steps": args.steps, "batch_size": args.batch_size, "progress": False,
        "resolutions": [int(r) for r in args.resolutions.split(",")],
        "latency_table": args.latency_table,
    }  # fmt: skip
    ev = SupernetEvaluator(space, "digits", seed=0, run_dir=args.out, options=options)
    t0 = time.perf_counter()
    ev.supernet()
    train_seconds = time.perf_counter() - t0
    latency = _latency_fn(space, ev.latency)
    limits = {"latency": args.max_latency}
    objectives = parse_objectives("accuracy")
    seconds = 60 * args.minutes

    # compile the scoring of every priced resolution, and time a scoring once compiled
    compiled: set[int] = set()
    probe = build_strategy(
        "random", space, objectives, 0, None, SearchContext(limits=limits, cost=latency)
    )
    g = probe.ask()
    _score(ev, g, compiled, Clock())
    t = time.perf_counter()
    ev.accuracy(g)
    score_seconds = time.perf_counter() - t
    samples = args.samples or max(10, int(seconds / score_seconds) // 2)
    _compile_predictor_fit(space, g, samples)

    rows = []
    for k, seed in enumerate(int(s) for s in args.seeds.split(",")):
        order = ["ofa-evolution", "evolution"][:: 1 if k % 2 == 0 else -1]  # alternate
        for name in order:
            opts = {"samples": samples} if name == "ofa-evolution" else None
            ctx = SearchContext(limits=limits, cost=latency)
            strategy = build_strategy(name, space, objectives, seed, opts, ctx)
            load = os.getloadavg()[0]
            row = _run(name, strategy, ev, latency, compiled, seconds)
            rows.append({"seed": seed, "load_average_1min_at_start": load, **row})
            print(
                f"seed {seed} {name}: best {row['best_accuracy']:.2f}% at "
                f"{row['best_latency_ms']:.2f} ms after {row['scored']} scored",
                flush=True,
            )
    summary = {
        name: {
            "median_best_accuracy": _median(
                [r["best_accuracy"] for r in rows if r["strategy"] == name]
            ),
            "median_scored": _median([r["scored"] for r in rows if r["strategy"] == name]),
        }
        for name in ("ofa-evolution", "evolution")
    }
    out = {
        "command": "python -m benchmarks.ofa_specialisation " + " ".join(sys.argv[1:] if argv is None else argv),
        "space": "ofa (w1.0)",
        "dataset": "digits, upsampled to the genotype's resolution",
        "supernet": {"file": str(ev.supernet_file()), "steps": args.steps, "batch_size": args.batch_size,
                     "training_resolutions": options["resolutions"], "train_seconds": train_seconds,
                     "train": {k: v for k, v in ev.train_summary.items() if k != "trace"}},
        "latency_table": ev.latency.name, "limits": limits,
        "seconds_per_search": seconds, "score_seconds_compiled": score_seconds,
        "ofa_evolution_samples": samples,
        "load_average_at_end": os.getloadavg(),
        "rows": rows, "summary": summary,
    }  # fmt: skip
    Path(args.result).write_text(json.dumps(out, indent=1))
    for name, s in summary.items():
        print(f"{name}: median best {s['median_best_accuracy']:.2f}% ({s['median_scored']} scored)")
    return out


if __name__ == "__main__":
    main()
