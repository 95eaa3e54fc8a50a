"""XLA:CPU convolution facts the supernets are built around, measured on this machine.

1. A convolution inside a ``lax.scan`` body against the same convolutions unrolled (dense 3x3
   and depthwise 3x3 at 64x32x32x16, forward + backward of two convs).
2. A 7x7 depthwise conv at 32x32x32x144 (an OFA layer at 128x128 input): XLA's grouped
   convolution against :func:`nas.oneshot.shifted_depthwise`, forward only and forward +
   backward.

Usage: ``python -m benchmarks.xla_cpu_convs``. Writes ``benchmarks/results/xla_cpu_convs.json``
(milliseconds, median of 5 after a warm-up, with ``os.getloadavg()``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "xla_cpu_convs.json"


def _ms(f, *args, reps: int = 5) -> float:
    import jax

    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from nas.oneshot import shifted_depthwise

    dn = ("NHWC", "HWIO", "NHWC")
    rng = np.random.default_rng(0)
    out: dict = {"jax": jax.__version__, "cpus": os.cpu_count(), "load_before": os.getloadavg()}

    x = jnp.asarray(rng.standard_normal((64, 32, 32, 16), np.float32))
    loops = {}
    for groups, cin in (("dense", 16), ("depthwise", 1)):
        g = 1 if groups == "dense" else 16
        k = jnp.asarray(rng.standard_normal((2, 3, 3, cin, 16), np.float32))

        def conv(x, w, g=g):
            return lax.conv_general_dilated(
                x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn, feature_group_count=g
            )

        def unrolled(x, k, conv=conv):
            return sum(jnp.sum(jnp.tanh(conv(x, k[i]))) for i in range(2))

        def scanned(x, k, conv=conv):
            body = lambda c, w: (c + jnp.sum(jnp.tanh(conv(x, w))), None)  # noqa: E731
            return lax.scan(body, 0.0, k)[0]

        for name, f in (("unrolled", unrolled), ("scan", scanned)):
            loops[f"{groups}_{name}_ms"] = _ms(jax.jit(jax.grad(f, argnums=(0, 1))), x, k)
    out["conv_in_loop_64x32x32x16_k3"] = loops

    c = 144
    x = jnp.asarray(rng.standard_normal((32, 32, 32, c), np.float32))
    w = jnp.asarray(rng.standard_normal((7, 7, c), np.float32))

    def xla(x, w):
        p = 3
        wk = w[:, :, None, :]
        return lax.conv_general_dilated(
            x, wk, (1, 1), ((p, p), (p, p)), dimension_numbers=dn, feature_group_count=c
        )

    def shift(x, w):
        return shifted_depthwise(x, w, 1)

    dw = {}
    for name, f in (("xla", xla), ("shift", shift)):
        dw[f"{name}_forward_ms"] = _ms(jax.jit(f), x, w)
        loss = lambda x, w, f=f: jnp.sum(jnp.tanh(f(x, w)))  # noqa: E731
        dw[f"{name}_forward_backward_ms"] = _ms(jax.jit(jax.grad(loss, argnums=(0, 1))), x, w)
    out["depthwise_32x32x32x144_k7"] = dw
    out["load_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
