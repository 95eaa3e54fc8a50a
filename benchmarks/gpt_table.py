"""A labelled table of gpt children scored by a trained supernet, for the predictors.

Trains the ``gpt`` supernet as the ``supernet`` evaluator does by default (``--steps``
sandwich steps on the standard-library corpus) or loads ``--supernet FILE``, scores
``--n`` random children (distinct) in bits per byte on ``--eval-bytes`` validation bytes,
and writes ``benchmarks/results/gpt_supernet_table.json``, which ``nas.predictors.data`` serves
as the benchmark ``gpt`` (``nas predictor evaluate --train gpt:100 --test gpt:300``).

Run: ``.venv/bin/python -m benchmarks.gpt_table [--n 500] [--steps 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "gpt_supernet_table.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-bytes", type=int, default=32768)
    p.add_argument("--supernet", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()

    from nas.search_spaces import get_space
    from nas.search_spaces.gpt.evaluator import GPTSupernetEvaluator

    space = get_space("gpt")
    options = {"steps": args.steps, "eval_bytes": args.eval_bytes, "supernet_path": args.supernet}
    ev = GPTSupernetEvaluator(space, "stdlib", seed=args.seed, options=options)
    t0 = time.perf_counter()
    ev.supernet()
    trained = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed + 1)
    seen: dict[str, float] = {}
    while len(seen) < args.n:
        g = space.sample(rng)
        if g.to_str() not in seen:
            seen[g.to_str()] = ev.evaluate(g).metrics["bits_per_byte"]
    doc = {
        "space": "gpt",
        "dataset": "stdlib",
        "metric": "bits_per_byte",
        "corpus": ev.corpus.summary(),
        "supernet": ev.settings()["supernet"],
        "supernet_train": ev.train_summary,
        "train_seconds": trained,
        "score_seconds": time.perf_counter() - t0 - trained,
        "load_average": os.getloadavg(),
        "archs": sorted(seen.items()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    values = np.array(list(seen.values()))
    print(f"{len(seen)} children: bits per byte {values.min():.3f} .. {values.max():.3f}")


if __name__ == "__main__":
    main()
