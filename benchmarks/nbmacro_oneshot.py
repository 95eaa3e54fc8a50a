"""How well does one-shot supernet accuracy rank NAS-Bench-Macro's real accuracies?

Trains the NAS-Bench-Macro weight-sharing supernet (uniform single-path sampling) on the data
available here, then scores a random sample of architectures by their one-shot accuracy
(inherited weights, BN recalibrated per path) and compares the ranking with the benchmark's
ground truth by Kendall's tau, next to the FLOPs and params proxies on the same sample.

There is no CIFAR-10 on this machine. The supernet is trained on scikit-learn's digits:
``--net digits`` uses the space's digits network (8x8x1 inputs, the same 8 searchable layers
and candidates at smaller widths); ``--net cifar10`` uses the CIFAR-10 network itself on
digits upsampled to 32x32 and repeated over 3 channels. The ground truth is always the
table's CIFAR-10 test accuracy (``mean_acc``), so the tau measures how a ranking learnt on
one small task *transfers* to CIFAR-10 -- not SPOS's ranking quality on CIFAR-10.

Run: ``.venv/bin/python -m benchmarks.nbmacro_oneshot [--net digits] [--steps 1500]
[--archs 300]``; writes ``benchmarks/results/nbmacro_oneshot_<net>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def upsampled_digits(seed: int = 0):
    """Digits as 32x32x3: each pixel repeated 4x4, the grey level on all three channels."""
    from nas.data import Dataset, load_digits

    d = load_digits(seed)

    def up(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(np.repeat(x, 4, 1), 4, 2), 3, 3).astype(np.float32)

    return Dataset("digits32", up(d.x_train), d.y_train, up(d.x_val), d.y_val, 10)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=("digits", "cifar10"), default="digits")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--archs", type=int, default=300)
    p.add_argument("--calib-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import jax
    from nas.search_spaces.nbmacro import NBMacroSpace, load_table
    from nas.search_spaces.nbmacro.supernet import MacroSupernet
    from scipy.stats import kendalltau, spearmanr

    from nas.data import load_digits
    from nas.oneshot import PathEvaluator, SupernetConfig, SupernetTrainer, calibration_batches

    space = NBMacroSpace()
    table = load_table()
    data = load_digits(args.seed) if args.net == "digits" else upsampled_digits(args.seed)
    cfg = replace(
        SupernetConfig(),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        calib_batches=args.calib_batches,
    )
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    c0 = time.process_time()
    model = MacroSupernet(args.net, seed=args.seed)
    trainer = SupernetTrainer(model, cfg)
    train = trainer.fit(data.x_train, data.y_train)
    train_wall = time.perf_counter() - t0
    train_cpu = time.process_time() - c0
    load1 = os.getloadavg()

    codes = sorted(table)
    rng = np.random.default_rng(args.seed)
    sample = [codes[i] for i in rng.choice(len(codes), args.archs, replace=False)]
    calib = calibration_batches(data.x_train, cfg.calib_batches, cfg.calib_batch_size, args.seed)
    ev = PathEvaluator(model, calib, data.x_val, data.y_val, cfg.eval_batch_size)
    t1 = time.perf_counter()
    oneshot = np.array([ev(model.path_of(space.parse(c))) for c in sample])
    eval_wall = time.perf_counter() - t1
    load2 = os.getloadavg()

    truth = np.array([table[c]["mean_acc"] for c in sample])
    flops = np.array([table[c]["flops"] for c in sample])
    params = np.array([table[c]["params"] for c in sample])
    all_truth = np.array([table[c]["mean_acc"] for c in codes])
    all_flops = np.array([table[c]["flops"] for c in codes])

    def tau(x: np.ndarray, y: np.ndarray = truth) -> float:
        return float(kendalltau(x, y).statistic)

    top = np.argsort(-oneshot)[:10]
    result = {
        "benchmark": "nbmacro_oneshot",
        "net": args.net,
        "data": "sklearn digits 8x8x1" if args.net == "digits" else "digits upsampled to 32x32x3",
        "ground_truth": "NAS-Bench-Macro CIFAR-10 mean test accuracy (table); tau = transfer",
        "config": cfg.to_json(),
        "archs": len(sample),
        "kendall_tau": {
            "oneshot_vs_cifar10": tau(oneshot),
            "flops_vs_cifar10": tau(flops),
            "params_vs_cifar10": tau(params),
            "flops_vs_cifar10_all_6561": float(kendalltau(all_flops, all_truth).statistic),
        },
        "spearman": {
            "oneshot_vs_cifar10": float(spearmanr(oneshot, truth).statistic),
            "flops_vs_cifar10": float(spearmanr(flops, truth).statistic),
        },
        "oneshot_accuracy": {
            "min": float(oneshot.min()),
            "mean": float(oneshot.mean()),
            "max": float(oneshot.max()),
        },
        "top10_by_oneshot": [
            {"arch": sample[i], "oneshot": float(oneshot[i]), "cifar10": float(truth[i])}
            for i in top
        ],
        "cifar10_of_top10_mean": float(truth[top].mean()),
        "cifar10_of_sample_mean": float(truth.mean()),
        "train": train,
        "train_wall_s": train_wall,
        "train_cpu_s": train_cpu,
        "eval_wall_s": eval_wall,
        "archs_per_s": len(sample) / eval_wall,
        "traces": {"train_step": trainer.traces, "path_eval": ev.traces},
        "loadavg": {"start": load0, "after_train": load1, "after_eval": load2},
        "machine": {
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
        },
        "per_arch": {c: float(a) for c, a in zip(sample, oneshot, strict=True)},
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"nbmacro_oneshot_{args.net}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(
        json.dumps(
            {
                k: result[k]
                for k in ("net", "archs", "kendall_tau", "train_wall_s", "eval_wall_s", "loadavg")
            },
            indent=1,
        )
    )
    return result


if __name__ == "__main__":
    main()
