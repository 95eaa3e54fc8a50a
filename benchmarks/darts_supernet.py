"""DARTS supernet training step: ours (JAX, flax.nnx) against NNI 3.0's, on the same machine.

The measured step is one weight update of the search network (width 16, 8 cells, batch 64
of 32x32x3 images, 10 classes): forward, cross-entropy, backward, gradient clipping at norm 5
and SGD with momentum 0.9 and weight decay 3e-4 over the network weights (the alphas are
held fixed), as in DARTS' ``train`` loop. NNI's network is
``nni.nas.strategy.DARTS().mutate_model(nni.nas.hub.pytorch.DARTS(width=16, num_cells=8))``.
Optionally (``--bilevel``) our whole first-order search step (architecture update on a
validation batch, then the weight update) is timed too.

Each side runs in its own process (so peak RSS is its own): ours with this interpreter,
NNI with ``--nni-python`` (a venv with ``torch==2.13.0 nni==3.0 pytorch_lightning``, never
this project's). Run from the repository root::

    python -m venv /tmp/nnivenv && /tmp/nnivenv/bin/pip install torch==2.13.0 nni==3.0 \\
        pytorch_lightning
    .venv/bin/python benchmarks/darts_supernet.py --nni-python /tmp/nnivenv/bin/python

Results go to ``benchmarks/results/darts_supernet.json``: per side the compile (or first
step) time, the median step time, the peak RSS, and the load averages before and after each
measurement (the CPU may be shared; compare numbers taken at similar load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "darts_supernet.json"
WIDTH, CELLS, BATCH, CLASSES = 16, 8, 64, 10


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _timed(fn, steps: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, times


# ------------------------------------------------------------------------------ ours


def weight_step(graphdef, alphas):
    """DARTS' weight update with the alphas held fixed: ``(tx, jitted step, trace count)``;
    ``step(weights, opt_state, x, y) -> (weights, opt_state, loss)``: forward, cross-entropy,
    backward, clip at norm 5, SGD momentum 0.9, weight decay 3e-4."""
    import jax
    import optax
    from flax import nnx

    tx = optax.chain(
        optax.clip_by_global_norm(5.0),
        optax.add_decayed_weights(3e-4),
        optax.sgd(0.025, momentum=0.9),
    )
    traces = [0]

    @jax.jit
    def step(weights, opt, x, y):
        traces[0] += 1

        def loss_fn(w):
            logits = nnx.merge(graphdef, w, alphas)(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, g = jax.value_and_grad(loss_fn)(weights)
        upd, opt = tx.update(g, opt, weights)
        return optax.apply_updates(weights, upd), opt, loss

    return tx, step, traces


def part_jax(steps: int, impl: str, bilevel: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    sys.path.insert(0, str(ROOT))
    from nas.search_spaces.darts.search import BilevelSearch, DartsSearchConfig
    from nas.search_spaces.darts.supernet import Alpha, DartsSupernet, count_weights

    model = DartsSupernet(WIDTH, CELLS, num_classes=CLASSES, impl=impl, seed=0)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((BATCH, 32, 32, 3), np.float32))
    y = jnp.asarray(rng.integers(0, CLASSES, BATCH).astype(np.int32))
    graphdef, weights, alphas = nnx.split(model, nnx.Param, Alpha)
    tx, step, traces = weight_step(graphdef, alphas)
    state = {"w": weights, "opt": tx.init(weights)}

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    compiled = step.lower(state["w"], state["opt"], x, y).compile()
    compile_s = time.perf_counter() - t0

    def run():
        state["w"], state["opt"], loss = compiled(state["w"], state["opt"], x, y)
        jax.block_until_ready(loss)

    first, times = _timed(run, steps)
    out = {
        "framework": f"jax {jax.__version__}",
        "impl": model.cells[0].impl,
        "weights": count_weights(model),
        "first_step_s": first,
        "compile_s": compile_s,
        "step_s": statistics.median(times),
        "step_times_s": times,
        "traces": traces[0],
        "peak_rss_mb": _rss_mb(),
        "load_before": load0,
        "load_after": os.getloadavg(),
    }
    if bilevel:
        search = BilevelSearch(
            DartsSupernet(WIDTH, CELLS, num_classes=CLASSES, impl=impl, seed=0),
            DartsSearchConfig(steps=steps + 1, order=1, impl=impl),
        )
        load0 = os.getloadavg()
        first, times = _timed(lambda: jax.block_until_ready(search.step(x, y, x, y)), steps)
        out["bilevel_first_order"] = {
            "first_step_s": first,
            "step_s": statistics.median(times),
            "step_times_s": times,
            "traces": search.traces,
            "peak_rss_mb": _rss_mb(),
            "load_before": load0,
            "load_after": os.getloadavg(),
        }
    return out


# ------------------------------------------------------------------------------ NNI


def part_nni(steps: int) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import nni
    import torch
    from nni.nas.hub.pytorch import DARTS
    from nni.nas.strategy import DARTS as DartsStrategy

    torch.manual_seed(0)
    supernet = DartsStrategy().mutate_model(DARTS(width=WIDTH, num_cells=CELLS))
    supernet.train()
    weights = [p for n, p in supernet.named_parameters() if "_arch_alpha" not in n]
    alphas = [p for n, p in supernet.named_parameters() if "_arch_alpha" in n]
    opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, CLASSES, (BATCH,))

    def run():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(supernet(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        opt.step()

    load0 = os.getloadavg()
    first, times = _timed(run, steps)
    return {
        "framework": f"torch {torch.__version__}, nni {nni.__version__}",
        "threads": torch.get_num_threads(),
        "weights": sum(p.numel() for p in weights),
        "alphas": sum(p.numel() for p in alphas),
        "first_step_s": first,
        "step_s": statistics.median(times),
        "step_times_s": times,
        "peak_rss_mb": _rss_mb(),
        "load_before": load0,
        "load_after": os.getloadavg(),
    }


# ------------------------------------------------------------------------------ driver


def _run_part(python: str, part: str, args: argparse.Namespace) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--part", part, "--steps", str(args.steps)]
    cmd += ["--impl", args.impl] + (["--bilevel"] if args.bilevel else [])
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    ap.add_argument(
        "--impl", default="auto", choices=("auto", "native", "shift", "dense", "depthwise")
    )
    ap.add_argument("--bilevel", action="store_true", help="also time our first-order search step")
    ap.add_argument("--nni-python", default="/tmp/nnivenv/bin/python")
    ap.add_argument("--part", choices=("jax", "nni"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.part == "jax":
        print(json.dumps(part_jax(args.steps, args.impl, args.bilevel)))
        return
    if args.part == "nni":
        print(json.dumps(part_nni(args.steps)))
        return
    res: dict = {
        "setting": {
            "width": WIDTH,
            "cells": CELLS,
            "batch": BATCH,
            "image": [32, 32, 3],
            "step": "weights: forward + CE + backward + clip 5 + SGD(0.9, wd 3e-4)",
            "timed_steps": args.steps,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if Path(args.nni_python).exists():
        res["nni"] = _run_part(args.nni_python, "nni", args)
    else:
        res["nni"] = {"error": f"no NNI interpreter at {args.nni_python}"}
    res["ours"] = _run_part(sys.executable, "jax", args)
    ours, nni = res["ours"].get("step_s"), res["nni"].get("step_s")
    if ours and nni:
        res["speedup_vs_nni"] = nni / ours
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in res if k in ("speedup_vs_nni",)}, indent=1))
    for side in ("ours", "nni"):
        r = res[side]
        print(
            side,
            {
                k: r.get(k)
                for k in ("step_s", "compile_s", "first_step_s", "peak_rss_mb", "load_before")
            },
        )


if __name__ == "__main__":
    main()
