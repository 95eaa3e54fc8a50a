"""Seconds per architecture of each zero-cost proxy, per leave-one-family-out family.

The LOFO benchmark (:mod:`benchmarks.predictors_lofo`) scores every architecture of the four
families once per proxy (cached: :func:`nas.predictors.graf.proxy_scores`); this says what
that costs, to choose which proxies and how many architectures per family are affordable.
Each proxy scores the first ``--archs`` architectures of each family (seed 0 draw) in this
process, uncached, single-threaded as the proxies run; the load average is recorded. Run
on a quiet machine: ``.venv/bin/python -m benchmarks.predictors_lofo_proxy_speed [--archs
20]`` (results: ``benchmarks/results/predictors_lofo_proxy_speed.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "predictors_lofo_proxy_speed.json"


def main(argv: list[str] | None = None) -> None:
    from nas.predictors.data import load_spec
    from nas.predictors.features import as_graph
    from nas.predictors.graf import PROXIES, _proxy

    from benchmarks.predictors_lofo import _specs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--proxies", default=",".join(PROXIES))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    result: dict[str, dict[str, float]] = {}
    for family, spec in _specs(1000).items():
        graphs = [as_graph(g) for g in load_spec(spec, seed=0).graphs[: args.archs]]
        _proxy("synflow", graphs[0])  # first-call set-up (imports, digits batch) not timed
        for name in args.proxies.split(","):
            t0 = time.perf_counter()
            for g in graphs:
                _proxy(name, g)
            per = (time.perf_counter() - t0) / len(graphs)
            result.setdefault(family, {})[name] = per
            print(f"{family} {name}: {per:.3f} s per architecture", flush=True)
    doc = {"archs": args.archs, "loadavg": os.getloadavg()[0], "seconds_per_arch": result}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
