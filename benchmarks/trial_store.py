"""Bytes written and loop overhead per trial as a search grows (10, 100, 1,000 trials).

A search with a trivial evaluator (a hashed score, no cost counting, no sleep) on NB201 in
one process, with SQLite storage: what remains per trial is the loop itself -- asking the
strategy, writing the trial before and after it runs, telling the result, saving the
strategy's state. The evaluator samples ``/proc/self/io`` (``wchar``: bytes handed to
``write``, SQLite's WAL included) and the clock at every call; the difference between two
calls is one trial's whole cost outside the evaluation. Reported: the mean over the trials
around 10, 100 and 1,000 for each strategy.

It runs against this checkout or, with ``--legacy``, against a checkout of the code before
the trial store (whose ``run_search`` took a searcher object), to measure both sides on the
same machine: ``cd OLD_CHECKOUT && python /path/to/benchmarks/trial_store.py --legacy`` (with
this checkout's venv: its editable install is set aside).

    python -m benchmarks.trial_store [--trials 1000] [--strategies evolution,tpe]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "trial_store.json"
WINDOWS = {10: (5, 15), 100: (90, 110), 1000: (950, 1000)}


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def _probe_class(base):
    class Probe(base):  # type: ignore[misc, valid-type]
        """The synthetic evaluator, sampling bytes written and time at every evaluation."""

        samples: list[tuple[float, int]] = []

        def evaluate(self, genotype, workdir=None):
            Probe.samples.append((time.perf_counter(), _wchar()))
            return super().evaluate(genotype, None)

    return Probe


def _use_checkout_in_cwd() -> None:
    """Import ``nas`` (and, before the rename, ``search_spaces``) from the working folder: drop
    the editable-install finders of the checkout this venv was installed from."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, os.getcwd())


def one(strategy: str, trials: int, legacy: bool) -> dict:
    import importlib

    from nas.evaluators.synthetic import SyntheticEvaluator

    spaces = importlib.import_module("search_spaces" if legacy else "nas.search_spaces")
    space = spaces.get_space("nb201")
    Probe = _probe_class(SyntheticEvaluator)
    Probe.samples = []
    with tempfile.TemporaryDirectory(prefix="nasbench-") as tmp:
        out = Path(tmp) / "run"
        if legacy:
            from nas.search import run_search
            from nas.searchers import get_searcher

            ev = Probe(space, cost=False)
            run_search(
                space,
                get_searcher(strategy, space, seed=0),
                ev,
                trials,
                out_dir=out,
                progress=False,
            )
        else:
            from nas.config import SearchConfig
            from nas.search import run_search

            ev = Probe(space, options={"cost": False})
            config = SearchConfig(
                space="nb201", strategy=strategy, evaluator="synthetic", budget=trials,
                out=str(out), progress=False,
            )  # fmt: skip
            run_search(config, evaluator=ev)
        db_bytes = (out / "study.db").stat().st_size
    s = Probe.samples
    per = [(s[i + 1][0] - s[i][0], s[i + 1][1] - s[i][1]) for i in range(len(s) - 1)]
    row = {"strategy": strategy, "trials": trials, "db_bytes": db_bytes}
    for at, (a, b) in WINDOWS.items():
        window = per[a - 1 : b - 1]
        if len(window) == b - a:
            row[f"ms_per_trial@{at}"] = round(1e3 * statistics.mean(t for t, _ in window), 2)
            row[f"bytes_per_trial@{at}"] = round(statistics.mean(w for _, w in window))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--strategies", default="evolution,tpe,random")
    p.add_argument("--legacy", action="store_true", help="the code before the trial store")
    p.add_argument("--label", default=None, help="name of this run in the results file")
    args = p.parse_args()
    if args.legacy:
        _use_checkout_in_cwd()
    rows = [one(s, args.trials, args.legacy) for s in args.strategies.split(",")]
    for r in rows:
        print(json.dumps(r))
    label = args.label or ("before (legacy)" if args.legacy else "after (trial store)")
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    doc[label] = {
        "rows": rows,
        "load_before": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1))
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
