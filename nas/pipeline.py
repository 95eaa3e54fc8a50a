"""The input pipeline: deterministic, augmented batches at any resolution, prefetched.

Every trainer of the platform (the ``train`` evaluator, the path and elastic supernets, the
DARTS search) takes its batches from :class:`Batches`. Batch ``step`` is a pure function of
``(seed, step)``: the epoch's order is ``default_rng([seed, epoch]).permutation(n)`` and the
augmentation of the batch draws from ``default_rng([seed, step, 1])``. So a training resumed
from a checkpoint at step ``s`` sees exactly the batches an uninterrupted run sees from
``s`` on, with no iterator state to save, and batches can be built ahead of time, several
at once, on worker threads (:meth:`Batches.iterate`).

Images are held in memory as NHWC float32 (standardised) at their stored size; a batch is
cut and resized on the fly to the resolution the step asks for:

- training: random resized crop (area fraction and aspect ratio drawn per image, as
  torchvision's ``RandomResizedCrop``) and an optional horizontal flip;
- evaluation and BatchNorm calibration: a centre crop of ``eval_crop`` of the side, resized
  (``eval_crop=0.875`` is ImageNet's resize-256/crop-224).

Resizing is bilinear (half-pixel centres, edge clamped), vectorised over the batch with
numpy. Channels are adapted to what the network takes: one-channel data is repeated to
three for an RGB network (``channels``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from nas.errors import ConfigError, DataError


@dataclass(frozen=True)
class Augment:
    """Training augmentation and the evaluation view.

    Attributes:
        crop_scale: range of the random crop's area, as a fraction of the image
            (torchvision's default for ImageNet is ``(0.08, 1.0)``).
        crop_ratio: range of the crop's aspect ratio (width / height), drawn log-uniformly.
        flip: horizontal flip with probability 1/2 (off for digits: a mirrored 2 is no 2).
        eval_crop: side of the evaluation centre crop as a fraction of the image.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    eval_crop: float = 0.875

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(
                f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}"
            )
        if not 0 < self.eval_crop <= 1:
            raise ConfigError(f"eval_crop must be in (0, 1], got {self.eval_crop}")


NO_AUGMENT = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, eval_crop=1.0)
"""Plain resizing, no augmentation: a network that sees the images as they are."""


_CHUNK = 8
"""Images resized together by :func:`resize_boxes` (the rest of a batch waits its turn)."""


def resize_boxes(
    x: np.ndarray, boxes: np.ndarray, size: tuple[int, int], flip: np.ndarray | None = None
) -> np.ndarray:
    """Bilinear crops of a batch: image ``i``'s box ``(top, left, height, width)`` (source
    pixels, floats) resized to ``size``; ``flip[i]`` mirrors it horizontally.

    Args:
        x: ``(B, H, W, C)`` float images.
        boxes: ``(B, 4)``.
        size: output ``(height, width)``.
        flip: ``(B,)`` booleans, or ``None``.
    """
    b, h, w, _ = x.shape
    if b > _CHUNK:  # a few images at a time: the gathers' temporaries stay in the cache
        return np.concatenate(
            [
                resize_boxes(x[i : i + _CHUNK], boxes[i : i + _CHUNK], size,
                             None if flip is None else flip[i : i + _CHUNK])
                for i in range(0, b, _CHUNK)
            ]
        )  # fmt: skip
    oh, ow = size
    top, left, bh, bw = (boxes[:, i : i + 1].astype(np.float64) for i in range(4))
    ys = top + (np.arange(oh) + 0.5) * bh / oh - 0.5  # (B, oh) source rows
    xs = left + (np.arange(ow) + 0.5) * bw / ow - 0.5  # (B, ow)
    if flip is not None:
        xs = np.where(flip[:, None], xs[:, ::-1], xs)
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(np.float32)[:, :, None, None]
    wx = (xs - x0).astype(np.float32)[:, None, :, None]
    bi = np.arange(b)[:, None, None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return x[bi, yy[:, :, None], xx[:, None, :]]

    top_row = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom_row = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return (top_row * (1 - wy) + bottom_row * wy).astype(np.float32)


def random_boxes(rng: np.random.Generator, n: int, h: int, w: int, augment: Augment) -> np.ndarray:
    """``n`` random-resized-crop boxes (torchvision's ``RandomResizedCrop`` rule: ten tries
    at an area and log-uniform aspect ratio that fit, else the whole image)."""
    out = np.tile(np.array([0.0, 0.0, h, w]), (n, 1))
    lo, hi = augment.crop_scale
    rlo, rhi = np.log(augment.crop_ratio[0]), np.log(augment.crop_ratio[1])
    area = rng.uniform(lo, hi, (n, 10)) * h * w
    ratio = np.exp(rng.uniform(rlo, rhi, (n, 10)))
    cw, ch = np.sqrt(area * ratio), np.sqrt(area / ratio)
    fits = (cw <= w) & (ch <= h)
    pos = rng.random((n, 2))
    for i in range(n):
        ok = np.flatnonzero(fits[i])
        if len(ok):
            t = ok[0]
            out[i] = (pos[i, 0] * (h - ch[i, t]), pos[i, 1] * (w - cw[i, t]), ch[i, t], cw[i, t])
    return out


def match_channels(x: np.ndarray, channels: int | None) -> np.ndarray:
    """``x`` with ``channels`` channels: one channel repeats to three (grey to RGB)."""
    c = x.shape[-1]
    if channels is None or channels == c:
        return x
    if c == 1:
        return np.repeat(x, channels, axis=-1)
    raise DataError(f"the data has {c} channels, the network takes {channels}")


def eval_view(
    x: np.ndarray,
    resolution: int | None,
    augment: Augment = NO_AUGMENT,
    channels: int | None = None,
) -> np.ndarray:
    """The evaluation view of images: centre crop of ``augment.eval_crop``, resized to
    ``resolution`` (``None``: the stored size, uncropped)."""
    if resolution is None:
        return match_channels(x, channels)
    b, h, w, _ = x.shape
    ch, cw = h * augment.eval_crop, w * augment.eval_crop
    boxes = np.tile(np.array([(h - ch) / 2, (w - cw) / 2, ch, cw]), (b, 1))
    if resolution == h == w and augment.eval_crop == 1.0:
        return match_channels(x, channels)
    return match_channels(resize_boxes(x, boxes, (resolution, resolution)), channels)


class Batches:
    """Training batches of ``(x, y)``: batch ``step`` depends on ``(seed, step)`` only.

    Args:
        x: ``(N, H, W, C)`` float32 images.
        y: ``(N,)`` int labels.
        batch_size: images per batch (at most ``N``).
        seed: order and augmentation.
        augment: the training augmentation (``None``: none; the images as stored, or
            resized to the resolution).
        channels: the channels the network takes (one-channel data is repeated).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        seed: int = 0,
        augment: Augment | None = None,
        channels: int | None = None,
    ) -> None:
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"need as many labels as images (and some), got {len(x)} and {len(y)}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        self.x, self.y = x, np.asarray(y, np.int32)
        self.batch_size = min(batch_size, len(x))
        self.seed = seed
        self.augment = augment
        self.channels = channels
        self._per_epoch = len(x) // self.batch_size
        self._order: tuple[int, np.ndarray] | None = None

    def indices(self, step: int) -> np.ndarray:
        """The images of batch ``step`` (epochs of whole batches, reshuffled per epoch)."""
        epoch, k = divmod(step, self._per_epoch)
        order = self._order  # one read: worker threads may replace it meanwhile
        if order is None or order[0] != epoch:
            order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.x)))
            self._order = order
        bs = self.batch_size
        return order[1][k * bs : (k + 1) * bs]

    def __call__(self, step: int, resolution: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``step`` at ``resolution`` (``None``: the stored size)."""
        idx = self.indices(step)
        x = self.x[idx]
        h, w = x.shape[1:3]
        aug = self.augment
        if aug is not None and (aug.crop_scale != (1.0, 1.0) or aug.flip):
            rng = np.random.default_rng([self.seed, step, 1])
            boxes = random_boxes(rng, len(x), h, w, aug)
            flip = rng.random(len(x)) < 0.5 if aug.flip else None
            size = (resolution or h, resolution or w)
            x = resize_boxes(x, boxes, size, flip)
        elif resolution is not None and (resolution, resolution) != (h, w):
            x = eval_view(x, resolution)
        return match_channels(x, self.channels), self.y[idx]

    def iterate(
        self,
        start: int,
        stop: int,
        resolution: Callable[[int], int | None] | int | None = None,
        prefetch: int = 2,
        workers: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(step, x, y)`` for ``start <= step < stop``, in order, built ahead on
        ``workers`` threads (default: up to 4, one per core), at most ``prefetch`` batches
        beyond those being built. Batches are pure functions of ``(seed, step)``, so they are
        built in parallel and still the same as :meth:`__call__`'s (numpy releases the GIL in
        the gathers and arithmetic of the crop). ``resolution`` may depend on the step
        (elastic resolution); ``prefetch=0`` builds each batch on demand, on the caller's
        thread."""
        res = resolution if callable(resolution) else (lambda _s, r=resolution: r)
        if prefetch <= 0:
            for s in range(start, stop):
                yield (s, *self(s, res(s)))
            return
        workers = workers or max(1, min(4, os.cpu_count() or 1))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="nas-batches")
        pending: deque = deque()
        ahead = start
        try:
            for s in range(start, stop):
                while ahead < stop and len(pending) < workers + prefetch:
                    pending.append(pool.submit(self, ahead, res(ahead)))
                    ahead += 1
                x, y = pending.popleft().result()
                yield s, x, y
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def fixed_batches(
    x: np.ndarray,
    batches: int,
    batch_size: int,
    seed: int = 0,
    resolution: int | None = None,
    augment: Augment = NO_AUGMENT,
    channels: int | None = None,
) -> list[np.ndarray]:
    """``batches`` fixed batches of distinct training images in their evaluation view (the
    BatchNorm calibration set: the same for every subnet of a resolution)."""
    rng = np.random.default_rng([seed, 1])
    bs = min(batch_size, len(x))
    idx = rng.permutation(len(x))
    out = []
    for k in range(max(1, batches)):
        sel = idx[(k * bs) % len(x) :][:bs]
        if len(sel) < bs:
            sel = np.concatenate([sel, idx[: bs - len(sel)]])
        out.append(eval_view(x[sel], resolution, augment, channels))
    return out


__all__ = [
    "NO_AUGMENT",
    "Augment",
    "Batches",
    "eval_view",
    "fixed_batches",
    "match_channels",
    "random_boxes",
    "resize_boxes",
]
