"""Exact parameter and FLOP counts of every NAS-Bench-201 cell on its three datasets.

Builds the IR for all 15,625 cells on CIFAR-10, CIFAR-100 and ImageNet16-120 and checks
``params()`` and ``flops()`` against

(a) a closed form written here from the NB201 skeleton, independent of the IR: stem conv 3x3
    (3 -> 16, no bias) + BN; three stages of 5 cells with 16/32/64 channels joined by ResNet
    reduction blocks (ReLU-conv3x3 s2-BN, ReLU-conv3x3-BN, shortcut 2x2 avg pool + 1x1 conv);
    cell edges ``nor_conv_kxk`` = ReLU-conv (no bias)-BN (affine); final BN + ReLU, global
    pool and a linear classifier with bias. Params count BN gamma/beta; FLOPs are conv and
    linear multiply-accumulates including the linear bias (pooling and BN not counted);
(b) NASLib's ``params`` for its 491 sampled cells per dataset
    (``nasbench/naslib_zc_nasbench201.json``).

Run from the project root: ``.venv/bin/python -m benchmarks.nb201_counts``. The report is
printed and written to ``benchmarks/results/nb201_counts.json``.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress

DATASETS: dict[str, tuple[int, int]] = {
    "cifar10": (32, 10),
    "cifar100": (32, 100),
    "ImageNet16-120": (16, 120),
}
"""dataset -> (input resolution, classes)."""

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
CHANNELS, CELLS_PER_STAGE = 16, 5

NASLIB_FILE = "nasbench/naslib_zc_nasbench201.json"
# NASLib op ids and its edge order ((1,2),(1,3),(1,4),(2,3),(2,4),(3,4)); NB201's string
# lists the edges by target node: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_TO_NB201_EDGES = (0, 1, 3, 2, 4, 5)

# Published values (CIFAR-10) that pin the closed form itself.
ANCHORS = {
    "all nor_conv_3x3 (largest net)": (("nor_conv_3x3",) * 6, 1_531_546, 220_119_690),
    "parameter-free cell": (
        ("none", "skip_connect", "none", "avg_pool_3x3", "none", "skip_connect"),
        None,
        7_783_050,
    ),
}

OUT = Path(__file__).resolve().parent / "results" / "nb201_counts.json"


def closed_form(ops: tuple[str, ...], dataset: str) -> tuple[int, int]:
    """(params, FLOPs) of the NB201 network for a cell, summed layer by layer."""
    hw, classes = DATASETS[dataset]
    params = flops = 0

    def conv(c_in: int, c_out: int, k: int, out_hw: int, bn: bool = True) -> None:
        nonlocal params, flops
        weights = k * k * c_in * c_out  # no conv bias anywhere in NB201
        params += weights + (2 * c_out if bn else 0)  # BN gamma and beta
        flops += weights * out_hw * out_hw

    conv(3, CHANNELS, 3, hw)  # stem
    c, res = CHANNELS, hw
    for stage in range(3):
        if stage > 0:  # ResNet reduction block
            c_in, c, res = c, 2 * c, res // 2
            conv(c_in, c, 3, res)  # ReLU-conv3x3 stride 2-BN
            conv(c, c, 3, res)  # ReLU-conv3x3-BN
            conv(c_in, c, 1, res, bn=False)  # shortcut: avg pool 2x2, conv 1x1
        for _ in range(CELLS_PER_STAGE):
            for op in ops:
                if op in KERNEL:
                    conv(c, c, KERNEL[op], res)
    params += 2 * c  # last BN (then ReLU, global pool)
    params += c * classes + classes  # classifier with bias
    flops += c * classes + classes  # NB201 counts the linear bias as MACs
    return params, flops


def _ir_counts(chunk: list[tuple[str, ...]]) -> list[tuple[tuple[str, ...], str, int, int]]:
    """Worker: (ops, dataset, params, FLOPs) from the IR for each cell of a chunk."""
    from nas.search_spaces import get_space
    from nas.search_spaces.nb201 import NB201Genotype

    space = get_space("nb201")
    out = []
    for ops in chunk:
        geno = NB201Genotype(ops)
        for dataset in DATASETS:
            g = space.to_graph(geno, dataset)
            out.append((ops, dataset, g.params(), g.flops()))
    return out


def naslib_records(path: Path) -> list[tuple[str, tuple[str, ...], dict[str, float]]]:
    """(dataset, NB201 edge ops, record) for every cell of NASLib's NB201 file."""
    data = json.loads(path.read_text())["nasbench201"]
    out = []
    for dataset, recs in data.items():
        for key, rec in recs.items():
            ids = ast.literal_eval(key)
            ops = tuple(NASLIB_OPS[ids[i]] for i in NASLIB_TO_NB201_EDGES)
            out.append((dataset, ops, rec))
    return out


def _spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def to_str(ops: tuple[str, ...]) -> str:
    o = ops
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="spawned worker processes")
    ap.add_argument("--chunk", type=int, default=125, help="cells per worker task")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    console = Console()
    load_start = round(os.getloadavg()[0], 2)

    from nas.paths import shared_data_dir

    t0 = time.perf_counter()
    anchors = {}
    for name, (ops, params, flops) in ANCHORS.items():
        got = closed_form(ops, "cifar10")
        anchors[name] = {
            "cell": to_str(ops),
            "expected": {"params": params, "flops": flops},
            "closed_form": {"params": got[0], "flops": got[1]},
            "ok": (params is None or got[0] == params) and got[1] == flops,
        }

    cells = list(itertools.product(OPS, repeat=6))
    chunks = [cells[i : i + args.chunk] for i in range(0, len(cells), args.chunk)]
    ir: dict[tuple[tuple[str, ...], str], tuple[int, int]] = {}
    ctx = multiprocessing.get_context("spawn")  # never fork (JAX may be alive elsewhere)
    with (
        ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool,
        Progress(console=console, transient=False) as progress,
    ):
        task = progress.add_task(
            f"IR of {len(cells)} cells x {len(DATASETS)} datasets", total=len(cells)
        )
        futures = [pool.submit(_ir_counts, c) for c in chunks]
        for fut in as_completed(futures):
            res = fut.result()
            for ops, dataset, p, f in res:
                ir[(ops, dataset)] = (p, f)
            progress.advance(task, len(res) // len(DATASETS))
    t_ir = time.perf_counter() - t0

    # (a) the closed form, every cell on every dataset
    closed_mismatch = []
    per_dataset: dict[str, dict[str, Any]] = {}
    for dataset in DATASETS:
        ps, fs = [], []
        for ops in cells:
            got = ir[(ops, dataset)]
            want = closed_form(ops, dataset)
            if got != want:
                closed_mismatch.append(
                    {"cell": to_str(ops), "dataset": dataset, "ir": got, "closed_form": want}
                )
            ps.append(got[0])
            fs.append(got[1])
        per_dataset[dataset] = {
            "cells": len(ps),
            "params_min": min(ps),
            "params_max": max(ps),
            "flops_min": min(fs),
            "flops_max": max(fs),
            "distinct_params": len(set(ps)),
            "distinct_flops": len(set(fs)),
        }

    # (b) NASLib's params for its sample
    recs = naslib_records(shared_data_dir() / NASLIB_FILE)
    naslib_mismatch = []
    naslib_checked: dict[str, int] = {}
    for dataset, ops, rec in recs:
        got = ir[(ops, dataset)][0]
        naslib_checked[dataset] = naslib_checked.get(dataset, 0) + 1
        if got != round(rec["params"] * 1e6):
            naslib_mismatch.append(
                {"cell": to_str(ops), "dataset": dataset, "ir": got, "naslib": rec["params"]}
            )
    # The edge mapping of NASLib's keys, checked on accuracy: NASLib's CIFAR-10 validation
    # accuracy against the table's test accuracy, with the mapping used and with none.
    from nas.search_spaces.nb201 import load_table

    table = load_table()
    naive, mapped, val = [], [], []
    data = json.loads((shared_data_dir() / NASLIB_FILE).read_text())["nasbench201"]["cifar10"]
    for key, rec in data.items():
        ids = ast.literal_eval(key)
        mapped.append(
            table[to_str(tuple(NASLIB_OPS[ids[i]] for i in NASLIB_TO_NB201_EDGES))]["cifar10"]
        )
        naive.append(table[to_str(tuple(NASLIB_OPS[i] for i in ids))]["cifar10"])
        val.append(rec["val_accuracy"])
    elapsed = time.perf_counter() - t0

    report: dict[str, Any] = {
        "benchmark": "nb201_counts",
        "cells": len(cells),
        "datasets": list(DATASETS),
        "anchors": anchors,
        "closed_form": {
            "checked": len(cells) * len(DATASETS),
            "mismatches": len(closed_mismatch),
            "first_mismatches": closed_mismatch[:10],
        },
        "naslib_params": {
            "checked": naslib_checked,
            "checked_total": sum(naslib_checked.values()),
            "mismatches": len(naslib_mismatch),
            "first_mismatches": naslib_mismatch[:10],
            "edge_mapping_check_spearman_val_vs_table_test_cifar10": {
                "mapped_edges": round(_spearman(val, mapped), 4),
                "unmapped_key_order": round(_spearman(val, naive), 4),
            },
        },
        "per_dataset": per_dataset,
        "time_s": {"ir_build_and_count": round(t_ir, 1), "total": round(elapsed, 1)},
        "workers": args.workers,
        "machine": {
            "python": platform.python_version(),
            "cpus": multiprocessing.cpu_count(),
            # other work on the machine slows the workers: the 1-min load average at the
            # start and at the end of the run, to read the times with
            "load_average_1min": [load_start, round(os.getloadavg()[0], 2)],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")

    ok = lambda b: "[green]ok[/]" if b else "[red]FAIL[/]"  # noqa: E731
    console.print(f"[bold]NAS-Bench-201 counts[/] ({len(cells)} cells x {len(DATASETS)} datasets)")
    for name, a in anchors.items():
        cf = a["closed_form"]
        console.print(
            f"  anchor {name}: params {cf['params']:,}, FLOPs {cf['flops']:,} {ok(a['ok'])}"
        )
    c = report["closed_form"]
    console.print(
        f"  IR vs closed form: {c['checked']} checked, {c['mismatches']} mismatches "
        f"{ok(c['mismatches'] == 0)}"
    )
    n = report["naslib_params"]
    console.print(
        f"  IR params vs NASLib: {n['checked_total']} checked {n['checked']}, "
        f"{n['mismatches']} mismatches {ok(n['mismatches'] == 0)}"
    )
    console.print(
        "  NASLib key mapping: Spearman(NASLib val acc, table test acc) = "
        f"{n['edge_mapping_check_spearman_val_vs_table_test_cifar10']}"
    )
    for d, s in per_dataset.items():
        console.print(
            f"  {d}: params {s['params_min']:,}..{s['params_max']:,}, "
            f"FLOPs {s['flops_min']:,}..{s['flops_max']:,}"
        )
    console.print(f"  time: IR {t_ir:.1f} s, total {elapsed:.1f} s ({args.workers} workers)")
    console.print(f"  written to {args.out}")
    return report


if __name__ == "__main__":
    rep = main()
    bad = rep["closed_form"]["mismatches"] + rep["naslib_params"]["mismatches"]
    raise SystemExit(1 if bad or not all(a["ok"] for a in rep["anchors"].values()) else 0)
