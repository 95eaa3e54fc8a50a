"""Gradient of a 1x1 conv on CPU: :func:`nas.oneshot.pointwise` (custom VJP) vs the plain
``einsum`` that JAX differentiates itself.

The layer feeds a BN-like normalisation and a ReLU, as in a supernet block, so that XLA has
ops to fuse with the weight gradient's operand. With the plain ``einsum``, XLA:CPU writes
``dy`` transposed (a ``copy_bitcast_fusion``) before the weight-gradient dot.

Usage: ``python -m benchmarks.pointwise_grad [--repeats 20]``. Writes
``benchmarks/results/pointwise_grad.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nas import memory

RESULTS = Path(__file__).parent / "results" / "pointwise_grad.json"
SHAPES = [(32, 32, 48, 144), (32, 16, 120, 40), (32, 8, 480, 112), (32, 64, 16, 64)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    memory.reexec()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from nas.oneshot import pointwise

    def plain(x, w):
        return jnp.einsum("...i,io->...o", x, w)

    rng = np.random.default_rng(0)
    rows = []
    for b, hw, cin, cout in SHAPES:
        x = jnp.asarray(rng.normal(size=(b, hw, hw, cin)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(cin, cout)), jnp.float32)
        s = jnp.asarray(rng.normal(size=(cout,)), jnp.float32)
        row: dict = {"x": [b, hw, hw, cin], "w": [cin, cout]}
        grads = {}
        for name, dense in (("einsum", plain), ("pointwise", pointwise)):

            def loss(x, w, dense=dense, s=s):
                y = dense(x, w)
                y = (y - y.mean((0, 1, 2))) * s
                return jnp.sum(jnp.maximum(y, 0.0) ** 2)

            step = jax.jit(jax.grad(loss, argnums=(0, 1)))
            grads[name] = jax.block_until_ready(step(x, w))
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                jax.block_until_ready(step(x, w))
                times.append(time.perf_counter() - t)
            row[name + "_ms"] = float(np.median(times) * 1e3)
        row["max_rel_diff"] = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            for a, b in zip(grads["pointwise"], grads["einsum"], strict=True)
        )
        print(row, flush=True)
        rows.append(row)
    out = {"rows": rows, "loadavg": os.getloadavg(), "device": str(jax.devices()[0])}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
