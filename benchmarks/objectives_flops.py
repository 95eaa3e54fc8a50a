"""Does every strategy optimise the study's objective? FLOPs-minimising searches on the NB201 table.

Each sample-based strategy runs ``nas search --space nb201 --evaluator benchmark --objectives
flops --budget 100`` for a few seeds; the number reported is the median FLOPs (in millions)
of trials 81-100. A strategy that minimises FLOPs ends near the cheapest cells (7.8M); one
that ignores the objective stays near a random cell's (about 45M) or climbs towards the
accurate, expensive cells. ``random`` is the reference for "ignores it".

It runs the command line of this checkout or, with ``--checkout OLD``, of another one (the
code before the search-layer redesign), reading the trials straight from the SQLite study
(user attribute ``cost``), so both sides are measured the same way:

    python -m benchmarks.objectives_flops [--seeds 0,1,2] [--checkout /path/to/old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "objectives_flops.json"
STRATEGIES = "random,evolution,tpe,nsga2,bananas,neural-predictor,spos-evolution"


def _site(tmp: Path) -> Path:
    """A folder whose ``sitecustomize`` sets aside this venv's editable-install finders, so that
    the ``nas`` (and ``search_spaces``) of ``--checkout`` are the ones imported."""
    site = tmp / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "sys.meta_path[:] = [f for f in sys.meta_path\n"
        "                    if 'editable' not in type(f).__module__.lower()]\n"
    )
    return site


def late_flops(checkout: Path, strategy: str, seed: int, budget: int, tmp: Path) -> dict:
    """One search; the median MFLOPs of its last 20 trials, or the error it printed."""
    import optuna

    out = tmp / f"{strategy}-{seed}"
    cmd = [sys.executable, "-m", "nas.cli", "search", "--space", "nb201", "--strategy",
           strategy, "--evaluator", "benchmark", "--dataset", "cifar10", "--objectives",
           "flops", "--budget", str(budget), "--seed", str(seed), "--out", str(out),
           "--no-progress"]  # fmt: skip
    path = str(checkout) if checkout == ROOT else f"{_site(tmp)}:{checkout}"
    env = {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}
    r = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return {"exit": r.returncode, "error": (r.stderr.strip().splitlines() or [""])[-1]}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{out / 'study.db'}"
    (name,) = optuna.get_all_study_names(url)
    trials = sorted(optuna.load_study(study_name=name, storage=url).trials, key=lambda t: t.number)
    late = [t.user_attrs["cost"]["flops"] / 1e6 for t in trials[budget - 20 : budget]]
    return {"exit": 0, "late_median_mflops": statistics.median(late), "trials": len(trials)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", default=STRATEGIES)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--budget", type=int, default=100)
    p.add_argument("--checkout", type=Path, default=ROOT, help="the code to run (default: this)")
    p.add_argument("--label", default=None, help="name of this run in the results file")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            runs = [late_flops(args.checkout, strategy, s, args.budget, Path(tmp)) for s in seeds]
            ok = [r["late_median_mflops"] for r in runs if r["exit"] == 0]
            rows[strategy] = {
                "per_seed": runs,
                "median_over_seeds_mflops": statistics.median(ok) if ok else None,
            }
            print(strategy, json.dumps(rows[strategy]), flush=True)
    label = args.label or ("this checkout" if args.checkout == ROOT else str(args.checkout))
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[label] = {
        "command": " ".join(["python -m benchmarks.objectives_flops", *sys.argv[1:]]),
        "what": "median MFLOPs of trials 81-100, --objectives flops, NB201 table (cifar10)",
        "seeds": seeds,
        "budget": args.budget,
        "strategies": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
