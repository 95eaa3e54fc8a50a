"""What differs between one elastic sandwich step and the next: counts, not timings.

For ``--steps`` sandwich steps (largest + smallest + two random subnets, BigNAS's rule, the
smallest registered as a fixed subnet as BigNAS's training does), this records per step:

- ``compiles``: XLA compilations during the step (``jax.monitoring``'s backend-compile
  events: the training step itself and any eager operation compiled on the way);
- ``static``: the step's static arguments (which subnets run a fixed program): a change
  means another compiled program;
- ``donation_warnings``: donated buffers XLA could not reuse (each one is a copy);
- ``minor_faults`` / ``major_faults`` / ``involuntary_switches`` (``getrusage``): pages
  first-touched (glibc returning XLA's per-step buffers to the kernel shows here; see
  :mod:`nas.memory`), and how often another process took the core;
- ``mid_channels``: the subnets' summed middle widths (the step's work).

Then the same for steps fed by the input pipeline (:class:`nas.pipeline.Batches`, augmented,
resolution drawn per step from ``--resolutions``, prefetched on a thread), to see what the
data path adds: a compile per new resolution, and nothing else.

``--full``: OFA-MobileNetV3 w1.0 on ImageNet-shaped inputs at 128x128, batch 32 (the
``benchmarks.ofa_supernet`` setting; minutes to compile); default: a tiny OFA-shaped layout
at 32x32 (seconds), which shows the same structure. It runs with the ``nas`` CLI's malloc
settings (:mod:`nas.memory`; it re-executes itself); ``NAS_MALLOC_TUNING=0`` runs it without,
to compare the fault counts.

Usage: ``python -m benchmarks.sandwich_diagnostics [--full] [--steps 12]``; writes
``benchmarks/results/sandwich_diagnostics[_full].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import warnings
from pathlib import Path


def _layout(full: bool):
    from nas.search_spaces.ofa.supernet import NetLayout, StageLayout, ofa_layout

    if full:
        return ofa_layout(1.0, 1000, 3)
    return NetLayout(
        in_channels=3, stem_width=8, stem_act="hswish",
        stages=(
            StageLayout(8, 1, "relu", False, 1, (3,), 1, True),
            StageLayout(16, 2, "relu", False, 4, (3, 5, 7), 6, expands=(3, 4, 6)),
            StageLayout(24, 2, "hswish", True, 4, (3, 5, 7), 6, expands=(3, 4, 6)),
        ),
        head_width=32, head_act="hswish", feature_mix=48, n_classes=10,
    )  # fmt: skip


def _choice(layout, rng, pick):
    """A subnet of ``layout``: ``pick`` = ``max``, ``min`` or ``random``."""
    from nas.search_spaces.ofa.supernet import SubnetChoice

    def one(options):
        options = sorted(options)
        if pick == "max":
            return options[-1]
        return options[0] if pick == "min" else int(rng.choice(options))

    stages = layout.stages
    depths = tuple(one(range(1 if s.max_depth == 1 else 2, s.max_depth + 1)) for s in stages)
    ks, ex = [], []
    for s in stages:
        for _ in range(s.max_depth):
            ks.append(one(s.kernels))
            ex.append(1 if s.max_expand == 1 else one(s.expands))
    widths = tuple(s.max_width for s in stages)
    return SubnetChoice(layout.stem_width, widths, depths, tuple(ks), tuple(ex), layout.head_width)


class _Counters:
    """Compile events between two reads."""

    def __init__(self) -> None:
        import jax

        self.compiles = 0

        def on_event(event: str, duration: float, **_: object) -> None:
            if "backend_compile" in event:
                self.compiles += 1

        jax.monitoring.register_event_duration_secs_listener(on_event)

    def read(self) -> int:
        c, self.compiles = self.compiles, 0
        return c


def _measure(counters, step, archs, static) -> dict:
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    counters.read()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "compiles": counters.read(),
        "static": static,
        "donation_warnings": sum("donated" in str(w.message) for w in caught),
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
        "major_faults": r1.ru_majflt - r0.ru_majflt,
        "involuntary_switches": r1.ru_nivcsw - r0.ru_nivcsw,
        "mid_channels": int(sum(int(a["mid"].sum()) for a in archs)),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--resolutions", default="")
    args = p.parse_args(argv)
    from nas import memory

    memory.reexec()  # glibc malloc tuned as the nas CLI runs (nas.memory); before JAX starts

    import numpy as np
    from nas.search_spaces.ofa.supernet import ElasticMBNet, encode_arch
    from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer

    from nas.pipeline import Augment, Batches

    layout = _layout(args.full)
    res = [int(r) for r in (args.resolutions or ("128,160" if args.full else "32,40")).split(",")]
    batch = 32 if args.full else 16
    counters = _Counters()
    model = ElasticMBNet(layout, seed=0)
    rng = np.random.default_rng(0)
    big, small = (encode_arch(layout, _choice(layout, rng, k)) for k in ("max", "min"))
    trainer = ElasticTrainer(model, ElasticTrainConfig(optimizer="sgd", lr=0.01), fixed=[small])
    x = rng.normal(size=(batch, res[0], res[0], 3)).astype(np.float32)
    y = rng.integers(0, layout.n_classes, batch).astype(np.int32)

    def sandwich() -> list:
        return [big, small, *(encode_arch(layout, _choice(layout, rng, "random")) for _ in "ab")]

    def static(archs) -> str:
        return str([f is not None for f in (trainer._fixed_of(a) for a in archs)])

    fixed_rows = []
    for _ in range(args.steps):
        archs = sandwich()
        run = lambda a=archs: trainer.step(x, y, a, mode="sandwich")  # noqa: E731
        fixed_rows.append(_measure(counters, run, archs, static(archs)))

    data_rows = []
    pool = rng.normal(size=(256, 48, 48, 3)).astype(np.float32)
    batches = Batches(pool, rng.integers(0, layout.n_classes, 256), batch, 0, Augment())
    feed = batches.iterate(0, args.steps, lambda s: res[s % len(res)])
    for _ in range(args.steps):
        archs = sandwich()
        box = {}

        def run(a=archs, box=box):
            s, xb, yb = next(feed)
            box["resolution"] = int(xb.shape[1])
            trainer.step(xb, yb, a, mode="sandwich")

        row = _measure(counters, run, archs, static(archs))
        data_rows.append({**row, "resolution": box["resolution"]})
    out = {
        "layout": "OFA-MobileNetV3 w1.0, ImageNet classes" if args.full else "tiny OFA-shaped",
        "batch": batch,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "traces": trainer.traces,
        "fixed_input": fixed_rows,
        "pipeline_input": data_rows,
    }
    name = "sandwich_diagnostics_full.json" if args.full else "sandwich_diagnostics.json"
    path = Path(__file__).parent / "results" / name
    path.write_text(json.dumps(out, indent=1))
    keys = ("compiles", "donation_warnings", "minor_faults", "static")
    for part in ("fixed_input", "pipeline_input"):
        print(part)
        for i, r in enumerate(out[part]):
            print(f"  step {i}: " + ", ".join(f"{k} {r[k]}" for k in keys), r.get("resolution", ""))
    return out


if __name__ == "__main__":
    main()
