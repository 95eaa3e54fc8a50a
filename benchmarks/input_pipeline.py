"""Our input pipeline (:class:`nas.pipeline.Batches`) against ``grain``, the loader made for JAX.

Issue 22 asked for a pipeline on ``grain`` or another loader "if you measure it better". Both
sides here do the same work on the same images: real data (scikit-learn's digits, stored as
64x64 RGB, standardised), training batches of ``--batch-size`` with random resized crop and
horizontal flip to ``--resolutions``, the bilinear resize of :func:`nas.pipeline.resize_boxes`
(the transform is the same code on both sides, so the comparison is of the loaders: order,
batching, threads, prefetch). Sides:

- ``ours``: :meth:`Batches.iterate` with ``--threads`` worker threads building batches
  ahead (the crop of the whole batch vectorised in numpy), and the same built on demand on
  the caller's thread (``ours-sync``);
- ``grain-per-image``: ``MapDataset.range(n).shuffle(seed).repeat()`` -> ``random_map``
  (one image's crop, grain's per-record generator) -> ``batch`` -> ``to_iter_dataset`` with
  ``--threads`` reader threads: grain's usual shape;
- ``grain-per-batch``: the same with the batch formed first and cropped as one array, as ours.

Reported: images per second over ``--batches`` batches after a few untimed ones, the load
average, and whether each side repeats its first batch exactly under the same seed (a
resumed training needs that). Run on a quiet machine:
``.venv/bin/python -m benchmarks.input_pipeline`` (needs ``pip install grain``); results in
``benchmarks/results/input_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results" / "input_pipeline.json"


def _images() -> tuple[np.ndarray, np.ndarray]:
    from nas.data import load_digits
    from nas.pipeline import eval_view

    d = load_digits(0)
    return eval_view(d.x_train, 64, channels=3), d.y_train


def _crop(x: np.ndarray, rng: np.random.Generator, res: int) -> np.ndarray:
    from nas.pipeline import Augment, random_boxes, resize_boxes

    boxes = random_boxes(rng, len(x), x.shape[1], x.shape[2], Augment())
    return resize_boxes(x, boxes, (res, res), rng.random(len(x)) < 0.5)


def ours(x, y, bs: int, res: int, seed: int, prefetch: int, workers: int = 1) -> Iterator[tuple]:
    from nas.pipeline import Augment, Batches

    b = Batches(x, y, bs, seed=seed, augment=Augment())
    for _, xb, yb in b.iterate(0, 10**9, res, prefetch=prefetch, workers=workers):
        yield xb, yb


def grain_per_image(x, y, bs: int, res: int, seed: int, threads: int) -> Iterator[tuple]:
    import grain

    def one(i, rng):
        return _crop(x[i : i + 1], rng, res)[0], y[i]

    ds = grain.MapDataset.range(len(x)).shuffle(seed=seed).repeat().random_map(one, seed=seed)
    ds = ds.batch(bs, drop_remainder=True)
    opts = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * bs)
    yield from ds.to_iter_dataset(opts)


def grain_per_batch(x, y, bs: int, res: int, seed: int, threads: int) -> Iterator[tuple]:
    import grain

    def crop(idx, rng):
        return _crop(x[idx], rng, res), y[idx]

    ds = grain.MapDataset.range(len(x)).shuffle(seed=seed).repeat().batch(bs, drop_remainder=True)
    ds = ds.random_map(crop, seed=seed)
    opts = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2)
    yield from ds.to_iter_dataset(opts)


def _time(make: Callable[[], Iterator[tuple]], batches: int, warm: int = 3) -> dict:
    it = make()
    first = next(it)
    for _ in range(warm - 1):
        next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(batches):
        xb, _ = next(it)
        n += len(xb)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    again = next(make())
    same = bool(np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]))
    return {
        "images_per_second": round(n / wall, 1),
        "cpu_seconds_per_1000_images": round(1000 * cpu / n, 3),
        "same_first_batch_for_same_seed": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="128,224")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    x, y = _images()
    bs, rows = a.batch_size, []
    sides: list[tuple[str, Callable]] = [("ours-sync", lambda r: ours(x, y, bs, r, 0, prefetch=0))]
    for t in (int(v) for v in a.threads.split(",")):
        sides.append((f"ours/{t}t", lambda r, t=t: ours(x, y, bs, r, 0, 2, workers=t)))
        sides.append((f"grain-per-image/{t}t", lambda r, t=t: grain_per_image(x, y, bs, r, 0, t)))
        sides.append((f"grain-per-batch/{t}t", lambda r, t=t: grain_per_batch(x, y, bs, r, 0, t)))
    for res in (int(v) for v in a.resolutions.split(",")):
        for name, make in sides:
            row = {"side": name, "resolution": res, **_time(lambda m=make, r=res: m(r), a.batches)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    import grain

    out = {
        "command": "python -m benchmarks.input_pipeline "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k != "out"),
        "data": f"digits train split ({len(x)} images) stored 64x64x3, random resized crop + flip",
        "batch_size": bs,
        "grain": getattr(grain, "__version__", "?"),
        "cpus": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()),
        "rows": rows,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
