"""ONNX-Net-style predictor: rank correlation on NB201 and zero-shot across spaces.

Runs end to end with one command and writes ``benchmarks/results/onnxnet.json``::

    .venv/bin/python -m benchmarks.onnxnet                  # full (all test architectures)
    .venv/bin/python -m benchmarks.onnxnet --nb201-test 3000 --macro-test 2000   # subsample

Parts:
  (a) NB201 CIFAR-10: train on 100 architectures, test on the rest (or ``--nb201-test``),
      in the text mode ``--mode`` (default ``nodes``, the predictor's default).
  (b) zero-shot: train on NB101 + NB301 (all 500 + 500), test on NB201 CIFAR-10 and
      NAS-Bench-Macro.
  (c) what the long-description plan costs: the text modes ``nodes`` (default: one line
      per node, distinct lines embedded once), ``blocks`` (repeated
      blocks once, chunks pooled), ``stats`` (the totals line only), ``flat1`` (node-by-node
      text truncated to 256 tokens) and ``flat`` (node-by-node text, every chunk, pooled) on
      a subsample (``--modes-test``).
  Prediction throughput with cached and uncached embeddings.
Every timing carries ``os.getloadavg()`` (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from nas.predictors.base import get_predictor
from nas.predictors.data import LabelledSet, load_spec, load_split
from scipy.stats import kendalltau, spearmanr

OUT = Path(__file__).parent / "results" / "onnxnet.json"


def _sub(s: LabelledSet, n: int | None, seed: int) -> LabelledSet:
    if n is None or n >= len(s):
        return s
    idx = np.random.default_rng(seed).choice(len(s), n, replace=False)
    return s.subset(sorted(int(i) for i in idx))


def _score(pred, test: LabelledSet) -> dict:
    from nas.predictors.evaluate import source_labels

    t = time.time()
    mean, std = pred.predict(test.graphs)
    dt = time.time() - t
    return {
        "kendall_tau": float(kendalltau(mean, test.y)[0]),
        "spearman": float(spearmanr(mean, test.y)[0]),
        "n_test": len(test),
        "mean_std": float(np.mean(std)),
        "predict_seconds": dt,
        "loadavg": os.getloadavg()[0],
        **source_labels(pred, test.graphs, np.asarray(test.y)),
    }


def _fit(train: LabelledSet, mode: str, seed: int, **options):
    t = time.time()
    p = get_predictor("onnxnet", seed=seed, mode=mode, **options)
    p.fit(train.graphs, train.y, train.groups)
    return p, time.time() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nb201-test", type=int, default=None, help="NB201 test subsample")
    ap.add_argument("--macro-test", type=int, default=None, help="NAS-Bench-Macro subsample")
    ap.add_argument("--nb301-train", type=int, default=None, help="NB301 training subsample")
    ap.add_argument("--modes-test", type=int, default=500, help="test archs for part (c)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip-modes", action="store_true")
    ap.add_argument("--mode", default="nodes", help="text mode of parts (a) and (b)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    cmd = " ".join(argv if argv is not None else sys.argv[1:])
    res: dict = {"command": f"python -m benchmarks.onnxnet {cmd}".strip(), "parts": {}}
    if args.skip_modes and Path(args.out).exists():
        # Part (c) is slow: a run that skips it keeps the earlier run's, saying so.
        old = json.loads(Path(args.out).read_text())
        if "modes" in old.get("parts", {}):
            res["parts"]["modes"] = old["parts"]["modes"]
            first = {"command": old.get("command"), "note": old.get("note")}
            res["modes_from"] = old.get("modes_from", first)

    def save() -> None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1))

    # (a) NB201, 100 training architectures.
    runs = []
    for seed in range(args.seeds):
        train, test = load_split(["nb201:cifar10:100"], "nb201:cifar10", seed=seed)
        if args.nb201_test is not None:
            # One fixed subsample for every seed and part (embeddings are computed once).
            pool = {g.arch for g in _sub(load_spec("nb201:cifar10"), args.nb201_test, 0).graphs}
            test = test.subset([i for i, g in enumerate(test.graphs) if g.arch in pool])
        p, fit_s = _fit(train, args.mode, seed)
        r = _score(p, test) | {"seed": seed, "n_train": len(train), "fit_seconds": fit_s}
        runs.append(r)
        print("nb201-100", r, flush=True)
        res["parts"]["nb201_100"] = {
            "runs": runs,
            "kendall_tau_mean": float(np.mean([x["kendall_tau"] for x in runs])),
        }
        save()

    # (b) zero-shot: NB101 + NB301 -> NB201, NAS-Bench-Macro.
    nb301 = "nb301" + (f":{args.nb301_train}" if args.nb301_train else "")
    train = LabelledSet.concat([load_spec("nb101"), load_spec(nb301)])
    zs = {}
    for seed in range(args.seeds):
        p, fit_s = _fit(train, args.mode, seed)
        for name, spec, n in (
            ("nb201", "nb201:cifar10", args.nb201_test),
            ("nbmacro", "nbmacro", args.macro_test),
        ):
            test = _sub(load_spec(spec), n, 0)
            r = _score(p, test) | {"seed": seed, "n_train": len(train), "fit_seconds": fit_s}
            zs.setdefault(name, []).append(r)
            print("zero-shot", name, r, flush=True)
        res["parts"]["zero_shot"] = {
            k: {"runs": v, "kendall_tau_mean": float(np.mean([x["kendall_tau"] for x in v]))}
            for k, v in zs.items()
        }
        save()

    # Throughput: cached features vs. the whole pipeline on fresh architectures.
    test = _sub(load_spec("nb201:cifar10"), 2000, 1)
    t = time.time()
    p.predict(test.graphs)
    cached = len(test) / (time.time() - t)
    fresh_p = get_predictor("onnxnet", seed=0, cache=False, mode=args.mode)
    fresh_p.params, fresh_p.mu, fresh_p.sd = p.params, p.mu, p.sd
    fresh_p.calib, fresh_p.fitted = p.calib, True
    few = _sub(load_spec("nb201:cifar10"), 50, 2)
    fresh_p.predict(few.graphs[:5])  # compile
    t = time.time()
    fresh_p.predict(few.graphs)
    fresh = len(few) / (time.time() - t)
    res["throughput"] = {
        "cached_archs_per_second": cached,
        "uncached_archs_per_second": fresh,
        "loadavg": os.getloadavg()[0],
    }
    print("throughput", res["throughput"], flush=True)
    save()

    # (c) long descriptions: what each text mode costs in rank correlation.
    if not args.skip_modes:
        modes = {}
        tr, te = load_split(["nb201:cifar10:100"], "nb201:cifar10", seed=0)
        te = _sub(te, args.modes_test, 0)
        configs = {
            "nodes+numbers": ("nodes", True),
            "nodes": ("nodes", False),
            "blocks+numbers": ("blocks", True),
            "blocks": ("blocks", False),
            "stats": ("stats", False),
            "flat1": ("flat1", False),
            "flat": ("flat", False),
        }
        for label, (mode, numeric) in configs.items():
            p, fit_s = _fit(tr, mode, 0, numeric=numeric)
            r = _score(p, te) | {"fit_seconds": fit_s}
            modes[label] = {"nb201_100": r}
            print("mode", label, r, flush=True)
            res["parts"]["modes"] = modes
            save()
        zs_train = train
        for label in ("nodes+numbers", "blocks+numbers", "blocks", "stats", "flat1"):
            mode, numeric = configs[label]
            p, fit_s = _fit(zs_train, mode, 0, numeric=numeric)
            for name, spec in (("nb201", "nb201:cifar10"), ("nbmacro", "nbmacro")):
                r = _score(p, _sub(load_spec(spec), args.modes_test, 0))
                modes[label][f"zero_shot_{name}"] = r
                print("mode", label, name, r, flush=True)
            save()
    return res


if __name__ == "__main__":
    main()
