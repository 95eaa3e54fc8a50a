"""The native depthwise kernels (:mod:`nas.kernels`) against the XLA formulations they replace.

Per shape, forward and forward + backward (``sum(tanh(y))``; gradients of the input and the
weights) in milliseconds, median of 5 after a warm-up:

- ``native``: :func:`nas.kernels.depthwise` (C++ through the XLA FFI);
- ``shift``: :func:`nas.oneshot.shifted_depthwise` (k*k shifted multiply-adds, custom VJP);
- ``xla``: ``lax.conv_general_dilated`` with one group per channel.

And the DARTS stage (ReLU -> depthwise -> pointwise) fused by
:func:`nas.kernels.depthwise_pointwise` against ``native`` depthwise + einsum and XLA's dense
conv with kernel ``dw x pw`` (the supernet's ``dense`` form).

Shapes: DARTS search cells (64x32x32x16 3x3 and 5x5 dilated, 64x8x8x64 5x5) and OFA layers at
128x128 input, batch 32 (32x64x64x96 3x3 stride 2, 32x32x32x144 7x7, 32x8x8x576 5x5).

Usage: ``python -m benchmarks.native_kernels``. Writes
``benchmarks/results/native_kernels.json`` with ``os.getloadavg()``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.xla_cpu_convs import _ms

RESULTS = Path(__file__).parent / "results" / "native_kernels.json"

DEPTHWISE = [  # (batch, size, channels, kernel, stride, dilation)
    (64, 32, 16, 3, 1, 1),
    (64, 32, 16, 5, 1, 2),
    (64, 8, 64, 5, 1, 1),
    (32, 64, 96, 3, 2, 1),
    (32, 32, 144, 7, 1, 1),
    (32, 8, 576, 5, 1, 1),
]
FUSED = [(64, 32, 16, 3, 1), (64, 32, 16, 5, 2), (64, 16, 32, 3, 1), (64, 8, 64, 5, 1)]


def _both(fn, *args) -> dict[str, float]:
    """Forward, and forward + backward of ``sum(tanh(fn(...)))`` in every argument."""
    import jax
    import jax.numpy as jnp

    fwd = jax.jit(fn)
    argnums = tuple(range(len(args)))
    bwd = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.tanh(fn(*a))), argnums=argnums))
    ms = lambda f: round(_ms(f, *args), 3)  # noqa: E731
    return {"forward_ms": ms(fwd), "forward_backward_ms": ms(bwd)}


def main() -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from nas import kernels
    from nas.oneshot import shifted_depthwise

    if not kernels.available():
        print("native kernels unavailable (no C++ compiler?)")
        return 1
    dn = ("NHWC", "HWIO", "NHWC")
    rng = np.random.default_rng(0)
    out: dict = {"jax": jax.__version__, "cpus": os.cpu_count(), "load_before": os.getloadavg()}

    def xla_dw(x, w, s, d):
        p = d * (w.shape[0] - 1) // 2
        return lax.conv_general_dilated(
            x,
            w[:, :, None, :],
            (s, s),
            ((p, p), (p, p)),
            rhs_dilation=(d, d),
            dimension_numbers=dn,
            feature_group_count=x.shape[-1],
        )

    rows = []
    for b, h, c, k, s, d in DEPTHWISE:
        x = jnp.asarray(rng.standard_normal((b, h, h, c), np.float32))
        w = jnp.asarray(rng.standard_normal((k, k, c), np.float32))
        row = {"shape": [b, h, h, c], "kernel": k, "stride": s, "dilation": d}
        row["native"] = _both(lambda x, w, s=s, d=d: kernels.depthwise(x, w, s, d), x, w)
        row["shift"] = _both(lambda x, w, s=s, d=d: shifted_depthwise(x, w, s, d), x, w)
        row["xla"] = _both(lambda x, w, s=s, d=d: xla_dw(x, w, s, d), x, w)
        print(row, flush=True)
        rows.append(row)
    out["depthwise"] = rows

    rows = []
    for b, h, c, k, d in FUSED:
        x = jnp.asarray(rng.standard_normal((b, h, h, c), np.float32))
        w = jnp.asarray(rng.standard_normal((k, k, c), np.float32))
        pw = jnp.asarray(rng.standard_normal((c, c), np.float32))
        row = {"shape": [b, h, h, c], "kernel": k, "dilation": d}
        row["fused"] = _both(
            lambda x, w, pw, d=d: kernels.depthwise_pointwise(x, w, pw, 1, d, relu=True), x, w, pw
        )
        row["native_then_einsum"] = _both(
            lambda x, w, pw, d=d: jnp.einsum(
                "bhwc,cd->bhwd", kernels.depthwise(x, w, 1, d, relu=True), pw
            ),
            x,
            w,
            pw,
        )

        def dense(x, w, pw, d=d):
            p = d * (w.shape[0] - 1) // 2
            kern = w[:, :, :, None] * pw[None, None]
            return lax.conv_general_dilated(
                jax.nn.relu(x),
                kern,
                (1, 1),
                ((p, p), (p, p)),
                rhs_dilation=(d, d),
                dimension_numbers=dn,
            )

        row["xla_dense"] = _both(dense, x, w, pw)
        print(row, flush=True)
        rows.append(row)
    out["depthwise_pointwise"] = rows
    out["load_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
