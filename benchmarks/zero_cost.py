"""Zero-cost proxies against NASLib's own scores, and their speed.

``../shared/data/nasbench/naslib_zc_nasbench201.json`` holds NASLib's proxy values for 491
NAS-Bench-201 cells (CIFAR-10 section). For the same cells this computes ours
(:mod:`nas.predictors.zerocost`) and reports, per proxy, Kendall tau between our score and
NASLib's, and each one's tau against the cells' accuracy (NASLib's ``val_accuracy``).
``synflow``, ``params`` and ``flops`` need no data; ``jacov``, ``snip`` and ``grad_norm``
depend on the batch (NASLib used CIFAR-10 images, we use scikit-learn's digits), so their
agreement is measured on ``--data-sample`` cells.

Speed (``--part speed``): ``nas predictor evaluate --predictor synflow`` on ``--speed-cells``
NB201 cells in a fresh process (graph features cached, proxy scores not): proxies per second
is the test size over the first prediction pass, which builds each cell's network and
scores it. Run it on a quiet machine; the load average is recorded.

Run: ``.venv/bin/python -m benchmarks.zero_cost [--part agreement|speed] [--data-sample 200]``
(results: ``benchmarks/results/zero_cost.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "zero_cost.json"
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
"""NASLib's NB201 op ids: Identity, Zero, ReLUConvBN3x3, ReLUConvBN1x1, AvgPool1x1."""


def naslib_cells() -> list[tuple[str, dict[str, float]]]:
    """``(NB201 string, NASLib's record)`` for every cell of the CIFAR-10 section."""
    from nas.paths import shared_data_dir

    doc = json.loads((shared_data_dir() / "nasbench/naslib_zc_nasbench201.json").read_text())
    out = []
    for key, rec in doc["nasbench201"]["cifar10"].items():
        e = [NASLIB_OPS[int(v)] for v in key.strip("()").split(",")]
        arch = f"|{e[0]}~0|+|{e[1]}~0|{e[3]}~1|+|{e[2]}~0|{e[4]}~1|{e[5]}~2|"
        out.append((arch, rec))
    return out


def _tau(a, b) -> float:
    from scipy.stats import kendalltau

    return float(np.nan_to_num(kendalltau(a, b)[0]))


def part_agreement(data_sample: int, seed: int) -> dict[str, Any]:
    from nas.predictors.zerocost import proxies as zc
    from nas.search_spaces import get_space
    from rich.progress import track
    from threadpoolctl import threadpool_limits

    space = get_space("nb201")
    cells = naslib_cells()
    data_idx = set(np.random.default_rng(seed).permutation(len(cells))[:data_sample].tolist())
    ours: dict[str, list[float]] = {k: [] for k in ("synflow", "params", "flops")}
    ours.update({k: [] for k in ("jacov", "snip", "grad_norm")})
    rows: dict[str, list[int]] = {"data": []}
    seconds: dict[str, float] = {k: 0.0 for k in ours}
    with threadpool_limits(1):
        for i, (arch, _) in enumerate(track(cells, description="NASLib's 491 NB201 cells")):
            g = space.to_graph(space.parse(arch), "cifar10")
            ours["params"].append(g.params())
            ours["flops"].append(g.flops())
            t0 = time.process_time()
            ours["synflow"].append(zc.synflow(g, seed=seed))
            seconds["synflow"] += time.process_time() - t0
            if i in data_idx:
                rows["data"].append(i)
                x, y = zc.digits_batch(tuple(g.shape(g.input)), 32, seed)
                for name, fn, args in (
                    ("jacov", zc.jacov, (g, x, seed)),
                    ("snip", zc.snip, (g, x, y, seed)),
                    ("grad_norm", zc.grad_norm, (g, x, y, seed)),
                ):
                    t0 = time.process_time()
                    ours[name].append(fn(*args))
                    seconds[name] += time.process_time() - t0
    acc = np.array([rec["val_accuracy"] for _, rec in cells])
    result: dict[str, Any] = {}
    for name, values in ours.items():
        idx = rows["data"] if name in ("jacov", "snip", "grad_norm") else list(range(len(cells)))
        theirs = np.array([cells[i][1][name] for i in idx])
        v = np.asarray(values, np.float64)
        result[name] = {
            "cells": len(idx),
            "tau_ours_vs_naslib": _tau(v, theirs),
            "tau_ours_vs_accuracy": _tau(v, acc[idx]),
            "tau_naslib_vs_accuracy": _tau(theirs, acc[idx]),
        }
        if name in seconds and seconds[name]:
            result[name]["cpu_seconds_per_cell_one_thread"] = seconds[name] / len(idx)
    result["synflow"]["max_ours"] = float(np.max(ours["synflow"]))
    result["synflow"]["max_naslib"] = float(max(rec["synflow"] for _, rec in cells))
    return result


def part_speed(cells: int) -> dict[str, Any]:
    """``nas predictor evaluate --predictor synflow`` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [
        sys.executable, "-m", "nas.cli", "predictor", "evaluate", "--predictor", "synflow",
        "--train", "nb201:cifar10:10", "--test", f"nb201:cifar10:{cells}", "--json",
    ]  # fmt: skip
    # Warm the graph-feature cache first (the timed run then builds networks, not features).
    subprocess.run([*cmd[:-1], "--predictor", "flops"], capture_output=True, env=env, check=True)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t0
    out = json.loads(r.stdout)
    return {
        "command": " ".join(cmd[1:]).replace("-m nas.cli", "nas"),
        "cells": cells,
        "wall_seconds": wall,
        "first_predict_seconds": out["first_predict_seconds"],
        "proxies_per_second": cells / out["first_predict_seconds"],
        "kendall_tau": out["kendall_tau"],
        "loadavg_before": load,
        "goal_proxies_per_second": 20,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("agreement", "speed", "all"), default="all")
    ap.add_argument("--data-sample", type=int, default=200)
    ap.add_argument("--speed-cells", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {}
    if args.part in ("agreement", "all"):
        doc["agreement"] = part_agreement(args.data_sample, args.seed)
    if args.part in ("speed", "all"):
        doc["speed"] = part_speed(args.speed_cells)
    doc["machine"] = {"cpus": os.cpu_count(), "loadavg": os.getloadavg()[0]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
