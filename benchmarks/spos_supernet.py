"""SPOS supernet throughput: training steps (images/s) and path evaluations (architectures/s).

For each network (the ImageNet-size SPOS supernet at 224x224 with a small batch, and the
digits one) it measures:

- the compile time of the training step, then ``--steps`` training steps, each on a fresh
  uniformly sampled path (one compile serves them all): images per second;
- path evaluation as the ``supernet`` evaluator does it: reset BN statistics, forward
  ``calib_batches`` training batches in training mode, then the accuracy over
  ``eval_images`` images: architectures per second (BN recalibration included).

ImageNet inputs are random (only speed is measured). The machine is shared: every number
carries ``os.getloadavg()`` at its start and end and the process CPU seconds, so contended
runs can be recognised; rerun on a quiet machine for reference numbers.

Run: ``.venv/bin/python -m benchmarks.spos_supernet [--nets digits imagenet]``; writes
``benchmarks/results/spos_supernet.json`` (``--out`` to change). Works on any JAX backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

SETTINGS = {
    # net: (train batch, calibration batches, calibration batch, evaluation images)
    "digits": (64, 4, 128, 360),
    "imagenet": (8, 2, 8, 16),
}


def _clock() -> tuple[float, float, tuple[float, float, float]]:
    return time.perf_counter(), time.process_time(), os.getloadavg()


def _since(t: tuple[float, float, tuple[float, float, float]]) -> dict:
    return {
        "wall_s": time.perf_counter() - t[0],
        "cpu_s": time.process_time() - t[1],
        "loadavg_start": list(t[2]),
        "loadavg_end": list(os.getloadavg()),
    }


def bench_net(net: str, steps: int, evals: int, dw_impl: str | None, seed: int = 0) -> dict:
    import jax
    from nas.search_spaces.spos.supernet import SPOSSupernet

    from nas.oneshot import PathEvaluator, SupernetConfig, SupernetTrainer, default_dw_impl

    batch, n_calib, calib_bs, n_eval = SETTINGS[net]
    rng = np.random.default_rng(seed)
    t = _clock()
    model = SPOSSupernet(net, seed=seed, dw_impl=dw_impl)
    build = _since(t)
    shape = model.input_shape
    classes = model.classifier.kernel[...].shape[1]
    if net == "digits":
        from nas.data import load_digits

        d = load_digits(seed)
        xs, ys = d.x_train, d.y_train
        x_val, y_val = d.x_val[:n_eval], d.y_val[:n_eval]
    else:
        xs = rng.standard_normal((4 * batch, *shape), np.float32)
        ys = rng.integers(0, classes, 4 * batch).astype(np.int32)
        x_val = rng.standard_normal((n_eval, *shape), np.float32)
        y_val = rng.integers(0, classes, n_eval).astype(np.int32)

    trainer = SupernetTrainer(model, SupernetConfig(steps=steps + 1, batch_size=batch))

    def batch_at(i: int) -> tuple[np.ndarray, np.ndarray]:
        j = (i * batch) % (len(xs) - batch + 1)
        return xs[j : j + batch], ys[j : j + batch]

    t = _clock()
    loss, _ = trainer.step(*batch_at(0), model.sample_path(rng))
    jax.block_until_ready(loss)
    compile_step = _since(t)
    t = _clock()
    for i in range(steps):
        loss, _ = trainer.step(*batch_at(i + 1), model.sample_path(rng))
    jax.block_until_ready(loss)
    train = _since(t)
    train["images_per_s"] = steps * batch / train["wall_s"]
    train["step_ms"] = 1000 * train["wall_s"] / steps

    calib = [xs[i * calib_bs : (i + 1) * calib_bs] for i in range(n_calib)]
    ev = PathEvaluator(model, calib, x_val, y_val, eval_batch_size=min(256, n_eval))
    t = _clock()
    ev(model.sample_path(rng))
    compile_eval = _since(t)
    t = _clock()
    for _ in range(evals):
        ev(model.sample_path(rng))
    evaluation = _since(t)
    evaluation["archs_per_s"] = evals / evaluation["wall_s"]
    return {
        "net": net,
        "input_shape": list(shape),
        "train_batch": batch,
        "calib_batches": n_calib,
        "calib_batch": calib_bs,
        "eval_images": n_eval,
        "dw_impl": dw_impl or default_dw_impl(),
        "build": build,
        "compile_train_step": compile_step,
        "train": train,
        "compile_path_eval": compile_eval,
        "path_eval": evaluation,
        "traces": {"train_step": trainer.traces, "path_eval": ev.traces},
        "final_loss": float(loss),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["digits", "imagenet"], choices=list(SETTINGS))
    p.add_argument("--steps", type=int, default=20, help="timed training steps per net")
    p.add_argument("--evals", type=int, default=10, help="timed path evaluations per net")
    p.add_argument("--dw-impl", choices=("native", "xla", "shift"), default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    import jax

    results = {
        "benchmark": "spos_supernet",
        "machine": {
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
        },
        "note": "loadavg recorded per measurement; the machine may be shared",
        "nets": [],
    }
    for net in args.nets:
        r = bench_net(net, args.steps, args.evals, args.dw_impl)
        results["nets"].append(r)
        print(
            f"{net}: compile {r['compile_train_step']['wall_s']:.1f}s, "
            f"{r['train']['images_per_s']:.1f} img/s ({r['train']['step_ms']:.0f} ms/step), "
            f"{r['path_eval']['archs_per_s']:.2f} archs/s, load {r['train']['loadavg_end'][0]:.1f}",
            flush=True,
        )
    out = Path(args.out or Path(__file__).parent / "results" / "spos_supernet.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
