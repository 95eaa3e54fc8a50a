"""Speed of the gpt supernet's training step: compile time, seconds per step, tokens per second.

For each ``--space`` (``gpt``, ``gpt-base``) and each mode, the step is compiled once, run
``--warmup`` times, then timed over ``--steps`` steps (median and quartiles):

* ``sandwich``: the supernet's step (largest, smallest and two random children on one
  batch; in-place distillation), the default training of the ``supernet`` evaluator;
* ``dense``: the largest child alone (what one ordinary training step costs).

``tokens_per_second`` counts the batch's tokens (``batch x context``) per step;
``child_tokens_per_second`` multiplies by the children a step trains. The device, the
jax version and the load average are recorded: on a shared machine timings are contended,
so run it where nothing else runs (and on a GPU when one is lent).

Run: ``.venv/bin/python -m benchmarks.gpt_supernet [--space gpt gpt-base] [--batch 16]
[--steps 20]``; writes ``benchmarks/results/gpt_supernet.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "gpt_supernet.json"


def _time_mode(space_name: str, mode: str, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from nas.search_spaces import get_space
    from nas.search_spaces.gpt.supernet import GPTSupernet
    from nas.search_spaces.gpt.train import SupernetConfig, SupernetTrainer

    space = get_space(space_name)
    children = 4 if mode == "sandwich" else 1
    cfg = SupernetConfig(steps=steps, batch_size=batch, random_children=2 if children > 1 else -1)
    trainer = SupernetTrainer(GPTSupernet(space, seed=0), cfg)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(0, 256, (batch, space.context)), jnp.int32)

    def step() -> None:
        trainer.params, trainer.opt_state, loss = trainer._step(
            trainer.params, trainer.opt_state, x, x, trainer.children(rng)
        )
        jax.block_until_ready(loss)

    t0 = time.perf_counter()
    step()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    tokens = batch * space.context
    return {
        "space": space_name,
        "mode": mode,
        "params_largest": space.to_graph(space.known()["max"]).params(),
        "batch": batch,
        "context": space.context,
        "children_per_step": children,
        "first_step_seconds": compile_s,
        "step_seconds_median": med,
        "step_seconds_quartiles": [float(np.percentile(times, q)) for q in (25, 75)],
        "tokens_per_second": tokens / med,
        "child_tokens_per_second": tokens * children / med,
        "traces": trainer.traces,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", nargs="+", default=["gpt", "gpt-base"])
    p.add_argument("--mode", nargs="+", default=["sandwich", "dense"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    import jax

    rows = [
        _time_mode(s, m, args.batch, args.steps, args.warmup) for s in args.space for m in args.mode
    ]
    doc = {
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    for r in rows:
        print(
            f"{r['space']:9s} {r['mode']:8s} {r['step_seconds_median'] * 1000:8.1f} ms/step "
            f"{r['tokens_per_second']:10.0f} tokens/s (compile+first {r['first_step_seconds']:.1f} s)"
        )


if __name__ == "__main__":
    main()
