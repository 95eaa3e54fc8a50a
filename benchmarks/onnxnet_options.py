"""ONNX-Net's options on NB201 with 100 training architectures: what the text and the numbers add.

The split of :mod:`benchmarks.onnxnet` part (a): per seed, 100 training architectures
(``nb201:cifar10:100``) and as test set the rest of one fixed 3000-architecture pool (the
same for every seed, so that embeddings are computed once). Each configuration (a name and
its predictor options) is fitted and scored by Kendall tau on every seed (with, where it has a
compute prior, the tau of the prior alone and of the learned part alone); the rows are kept
in ``benchmarks/results/onnxnet_options.json`` by (configuration, seeds).

Run: ``.venv/bin/python -m benchmarks.onnxnet_options [--seeds 0,1,2] [--configs JSON]``
(default configurations: the default (``nodes`` text), the ``blocks`` text it replaced, the
``blocks`` text with three size numbers as before ``graph_numbers`` (``numeric_weight=5``),
and the numbers almost alone (``numeric_weight=1000``)). Seeds 0-2 chose ``numeric_weight``
and the text mode; seeds 3-5 check those choices on other training sets.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "onnxnet_options.json"
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "blocks": {"mode": "blocks"},
    "text+3 numbers (weight 5)": {
        "mode": "blocks",
        "graph_numbers": False,
        "numeric_weight": 5.0,
    },
    "numbers almost alone (weight 1000)": {"mode": "blocks", "numeric_weight": 1000.0},
}


def splits(seeds: list[int], pool_size: int = 3000):
    from nas.predictors.data import load_spec, load_split

    from benchmarks.onnxnet import _sub

    pool = {g.arch for g in _sub(load_spec("nb201:cifar10"), pool_size, 0).graphs}
    for seed in seeds:
        train, test = load_split(["nb201:cifar10:100"], "nb201:cifar10", seed=seed)
        yield seed, train, test.subset([i for i, g in enumerate(test.graphs) if g.arch in pool])


def score(options: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    from nas.predictors.base import get_predictor
    from scipy.stats import kendalltau

    taus, parts, t0 = [], {"prior_only": [], "learned_only": []}, time.time()
    for seed, train, test in splits(seeds):
        p = get_predictor("onnxnet", seed=seed, **options)
        p.fit(train.graphs, train.y, train.groups)
        taus.append(float(kendalltau(p.predict(test.graphs)[0], test.y)[0]))
        dec = p.decompose(test.graphs)  # None without a prior
        if dec is not None:
            parts["prior_only"].append(float(kendalltau(dec.prior, test.y)[0]))
            parts["learned_only"].append(float(kendalltau(dec.learned, test.y)[0]))
    labels = {f"{k}_tau_mean": float(np.mean(v)) for k, v in parts.items() if v}
    return {
        "options": options,
        "seeds": seeds,
        "kendall_tau": taus,
        "kendall_tau_mean": float(np.mean(taus)),
        **labels,
        "n_train": 100,
        "seconds": time.time() - t0,
        "loadavg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--configs", default=None, help="JSON: {name: {option: value}}")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    configs = json.loads(args.configs) if args.configs else CONFIGS
    for name, options in configs.items():
        row = {"config": name, **score(options, seeds)}
        print(json.dumps(row), flush=True)
        doc = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
        key = (name, seeds)
        doc["rows"] = [r for r in doc["rows"] if (r["config"], r["seeds"]) != key] + [row]
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
