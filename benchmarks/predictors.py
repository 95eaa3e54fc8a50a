"""Predictor benchmark: rank correlation of every predictor on the shared benchmark tables.

Parts (``--part``, default all; each writes its section of the results JSON):

* ``nb201``: NB201 CIFAR-10 with 100 and 1,000 training architectures, tested on the rest.
* ``zeroshot``: trained on NB101 + NB301 only, tested on all of NB201 and all of
  NAS-Bench-Macro; then 50-shot fine-tuning on each target (tested on the rest).
* ``zc``: the JAX zero-cost proxies on a random sample of each target (they build and
  differentiate the full network per architecture, seconds each on this CPU), with params,
  FLOPs and the zero-shot GENNAPE model ranked on the same sample; and NASLib's published
  proxy values for its 491-architecture NB201 sample, for reference.
* ``throughput``: GENNAPE predictions per second over all 15,625 NB201 networks (features
  precomputed).

Run: ``.venv/bin/python -m benchmarks.predictors [--part P] [--seeds 0,1] [--zc-sample 50]``.
The load average is recorded beside every timing: numbers taken on a shared machine are
contended.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "predictors.json"
TRAINED = ("gennape", "onnxnet", "gbm", "mlp")
CHEAP_PROXIES = ("params", "flops")


def _available(name: str) -> bool:
    from nas.errors import NasError
    from predictors.base import get_predictor

    try:
        get_predictor(name)
        return True
    except NasError:
        return False
    except Exception:  # another helper's module may be mid-edit
        return False


def _load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def _save(section: str, value: Any) -> None:
    """Read-modify-write one section under a lock (parts may run in parallel processes)."""
    import fcntl

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = _load()
        doc[section] = value
        doc["machine"] = {"cpus": os.cpu_count(), "note": "shared machine; timings contended"}
        OUT.write_text(json.dumps(doc, indent=1))


def _row(result: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "predictor",
        "kendall_tau",
        "spearman",
        "n_train",
        "n_finetune",
        "n_test",
        "predictions_per_second",
        "fit_seconds",
        "ood_fraction",
    )
    out = {k: result[k] for k in keep if k in result}
    out["loadavg"] = round(os.getloadavg()[0], 2)
    return out


def part_nb201(seeds: list[int], names: list[str]) -> None:
    from predictors.base import get_predictor
    from predictors.data import load_split
    from predictors.evaluate import evaluate_predictor

    rows = []
    for n in (100, 1000):
        for seed in seeds:
            train, test = load_split([f"nb201:cifar10:{n}"], "nb201:cifar10", seed=seed)
            for name in names:
                t0 = time.time()
                r = evaluate_predictor(get_predictor(name, seed=seed), train, test)
                row = {"setting": f"nb201-cifar10-train{n}", "seed": seed, **_row(r)}
                rows.append(row)
                print(json.dumps(row), f"({time.time() - t0:.0f}s)", flush=True)
                _save("nb201_cifar10", rows)


def part_zeroshot(seeds: list[int], names: list[str]) -> None:
    from predictors.base import get_predictor
    from predictors.data import LabelledSet, load_spec
    from predictors.evaluate import evaluate_predictor, rank_metrics

    rows = []
    source = LabelledSet.concat([load_spec("nb101"), load_spec("nb301")])
    for target in ("nb201:cifar10", "nbmacro"):
        full = load_spec(target)
        for seed in seeds:
            order = np.random.default_rng(seed).permutation(len(full))
            shots, rest = full.subset(order[:50]), full.subset(order[50:])
            for name in names:
                p = get_predictor(name, seed=seed)
                if p.zero_shot:
                    r = evaluate_predictor(p, source, full)
                    row = {"setting": f"zeroshot-{target}", "seed": seed, **_row(r)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    # 50-shot fine-tuning of the same model, tested on the other archs.
                    if name not in CHEAP_PROXIES:
                        t0 = time.perf_counter()
                        p.fine_tune(shots.graphs, shots.y, shots.groups)
                        ft_s = time.perf_counter() - t0
                        m = rank_metrics(p.predict(rest.graphs)[0], rest.y)
                        row = {
                            "setting": f"50shot-{target}",
                            "seed": seed,
                            "predictor": name,
                            **m,
                            "n_train": len(source),
                            "n_finetune": 50,
                            "n_test": len(rest),
                            "fit_seconds": ft_s,
                            "loadavg": round(os.getloadavg()[0], 2),
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                    else:
                        m = rank_metrics(p.predict(rest.graphs)[0], rest.y)
                        rows.append(
                            {
                                "setting": f"50shot-{target}",
                                "seed": seed,
                                "predictor": name,
                                **m,
                                "n_test": len(rest),
                                "note": "training-free; same test set",
                            }
                        )
                else:
                    # Encoding baselines cannot score another space: trained on the 50 shots.
                    r = evaluate_predictor(p, shots, rest)
                    row = {"setting": f"50shot-{target}", "seed": seed, **_row(r)}
                    row["note"] = "own-space encoding: trained on the 50 target archs only"
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                _save("zeroshot", rows)


def part_zc(sample: int, seed: int) -> None:
    from predictors.base import get_predictor
    from predictors.baselines import ZERO_COST
    from predictors.data import LabelledSet, load_spec
    from predictors.evaluate import rank_metrics

    rows = []
    source = LabelledSet.concat([load_spec("nb101"), load_spec("nb301")])
    gen = get_predictor("gennape", seed=seed).fit(source.graphs, source.y, source.groups)
    for target in ("nb201:cifar10", "nbmacro"):
        data = load_spec(f"{target}:{sample}", seed=seed + 7)
        for name in (*CHEAP_PROXIES, *ZERO_COST):
            p = get_predictor(name, seed=seed).fit(data.graphs[:5])
            t0 = time.perf_counter()
            s = p.predict(data.graphs)[0]
            dt = time.perf_counter() - t0
            row = {
                "setting": f"zc-sample-{target}",
                "predictor": name,
                **rank_metrics(s, data.y),
                "n_test": len(data),
                "seconds_per_arch": dt / len(data),
                "loadavg": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            _save("zero_cost_sample", rows)
        m = rank_metrics(gen.predict(data.graphs)[0], data.y)
        rows.append(
            {
                "setting": f"zc-sample-{target}",
                "predictor": "gennape-zeroshot",
                **m,
                "n_test": len(data),
            }
        )
        _save("zero_cost_sample", rows)
    rows.extend(_naslib_reference())
    _save("zero_cost_sample", rows)


def _naslib_reference() -> list[dict[str, Any]]:
    """Tau of NASLib's own proxy values (PyTorch, CIFAR-10 data) on its NB201 sample."""
    from nas.paths import shared_data_dir
    from predictors.evaluate import rank_metrics

    path = shared_data_dir() / "nasbench" / "naslib_zc_nasbench201.json"
    if not path.exists():
        return []
    recs = json.loads(path.read_text())["nasbench201"]["cifar10"]
    ys = np.array([r["val_accuracy"] for r in recs.values()])
    out = []
    for proxy in ("synflow", "jacov", "snip", "grad_norm", "params", "flops"):
        vals = np.array([r[proxy] for r in recs.values()], float)
        out.append(
            {
                "setting": "naslib-reference-nb201-cifar10",
                "predictor": proxy,
                **rank_metrics(np.nan_to_num(vals, nan=-1e9), ys),
                "n_test": len(ys),
                "note": "NASLib's published values (validation accuracy), not computed here",
            }
        )
    return out


def part_throughput(seed: int) -> None:
    from predictors.base import get_predictor
    from predictors.data import load_spec
    from predictors.features import features

    train = load_spec("nb201:cifar10:100", seed=seed)
    full = load_spec("nb201:cifar10")
    features(full.graphs)
    p = get_predictor("gennape", seed=seed).fit(train.graphs, train.y)
    p.predict(full.graphs)
    rows = []
    for _ in range(3):
        t0 = time.perf_counter()
        p.predict(full.graphs)
        dt = time.perf_counter() - t0
        rows.append(
            {
                "predictor": "gennape",
                "archs": len(full),
                "seconds": dt,
                "predictions_per_second": len(full) / dt,
                "loadavg": round(os.getloadavg()[0], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    _save("throughput", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part", default="all", help="all or a comma list of nb201,zeroshot,zc,throughput"
    )
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--zc-sample", type=int, default=50)
    ap.add_argument("--predictors", help="comma-separated subset")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    # onnxnet has its own benchmark (benchmarks/onnxnet.py, text encoding is slow on CPU);
    # include it here with --predictors.
    default = [n for n in (*TRAINED, *CHEAP_PROXIES) if n != "onnxnet"]
    wanted = args.predictors.split(",") if args.predictors else default
    names = [n for n in wanted if _available(n)]
    parts = (
        {"nb201", "zeroshot", "zc", "throughput"}
        if args.part == "all"
        else set(args.part.split(","))
    )
    if "throughput" in parts:
        part_throughput(seeds[0])
    if "nb201" in parts:
        part_nb201(seeds, names)
    if "zeroshot" in parts:
        part_zeroshot(seeds, names)
    if "zc" in parts:
        part_zc(args.zc_sample, seeds[0])


if __name__ == "__main__":
    main()
