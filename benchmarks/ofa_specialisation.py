"""OFA specialisation against plain evolution, on one trained supernet, at equal wall time.

Trains (or loads, from ``--out``) one OFA supernet with the ``supernet`` evaluator, then runs
two searches under the same limit for the same wall-clock time, each candidate's accuracy
measured on the supernet (inherited weights, BN recalibrated, at its resolution):

- ``ofa-evolution``: OFA's specialisation (``nas.searchers.ofa_evolution``: an accuracy
  predictor fitted on ``--samples`` scored subnets, evolution on the predictor, then its
  best predicted subnets scored);
- ``evolution``: regularized evolution whose every candidate is scored on the supernet
  (candidates over the limit are redrawn, as the search's ``Constrained`` wrapper does).

It records, over time, the best measured accuracy within the limit. A quality comparison:
run it on a quiet machine so that both searches get the same share of it.

Run: ``.venv/bin/python -m benchmarks.ofa_specialisation [--steps 600] [--minutes 20]
[--max-flops 250M] [--resolutions 128,160]``; writes
``benchmarks/results/ofa_specialisation.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _run(name, searcher, ev, limits, seconds) -> dict:
    """Ask, score on the supernet, tell, until ``seconds`` have passed."""
    t0 = time.perf_counter()
    trace, best = [], float("-inf")
    while time.perf_counter() - t0 < seconds:
        g = searcher.ask()
        c = ev.cost(g)
        if any(c[k] > v for k, v in limits.items()):
            searcher.tell(g, None)
            continue
        acc = ev.accuracy(g)
        searcher.tell(g, (acc,))
        if acc > best:
            best = acc
            trace.append({"seconds": time.perf_counter() - t0, "accuracy": acc, "arch": str(g)})
    return {"strategy": name, "best_accuracy": best, "scored": searcher.n_told, "trace": trace}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--resolutions", default="128,160")
    p.add_argument("--max-flops", default="250M")
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--eval-limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ofa_specialisation")
    args = p.parse_args(argv)

    from nas.search_spaces import get_space

    from nas.evaluators.oneshot import SupernetEvaluator
    from nas.objectives import parse_objectives
    from nas.searchers.base import SearchContext
    from nas.searchers.evolution import RegularizedEvolution
    from nas.searchers.ofa_evolution import OFAEvolution
    from nas.searchers.wrappers import parse_quantity

    space = get_space("ofa")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    ev = SupernetEvaluator(
        space, "digits", seed=args.seed, run_dir=args.out,
        options={"steps": args.steps, "resolutions": resolutions,
                 "eval_limit": args.eval_limit},
    )  # fmt: skip
    t0 = time.perf_counter()
    ev.supernet()
    train_seconds = time.perf_counter() - t0
    limits = {"flops": parse_quantity(args.max_flops)}
    ctx = SearchContext(limits=limits, cost=ev.cost)
    objectives = parse_objectives("accuracy")
    seconds = 60 * args.minutes
    ofa = OFAEvolution(space, objectives, args.seed, {"samples": args.samples}, ctx)
    plain = RegularizedEvolution(space, objectives, args.seed, None, ctx)
    out = {
        "space": "ofa",
        "dataset": "digits (upsampled to the genotype's resolution)",
        "supernet_steps": args.steps,
        "training_resolutions": resolutions,
        "train_seconds": train_seconds,
        "train": ev.train_summary,
        "limits": limits,
        "seconds_per_search": seconds,
        "results": [_run("ofa-evolution", ofa, ev, limits, seconds),
                    _run("evolution", plain, ev, limits, seconds)],
    }  # fmt: skip
    path = Path(__file__).parent / "results" / "ofa_specialisation.json"
    path.write_text(json.dumps(out, indent=1))
    for r in out["results"]:
        print(f"{r['strategy']}: best {r['best_accuracy']:.2f}% after {r['scored']} scored")
    return out


if __name__ == "__main__":
    main()
