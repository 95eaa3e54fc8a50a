"""Training data from a local path: what ``--data-dir`` points at, recognised by its layout.

:func:`local_kind` names the layout and :func:`load_local` reads it into a standardised
:class:`~nas.data.Dataset`:

- ``cifar10``: a ``cifar-10-batches-py`` folder (``data_batch_1..5``, ``test_batch``);
- ``cifar100``: a ``cifar-100-python`` folder (``train``, ``test``; the 100 fine labels);
- ``arrays``: a numpy ``.npz`` file (:func:`load_arrays`);
- ``images``: an image folder, one subfolder per class (:mod:`nas.imagefolder`).

Pickles are read without running code (:func:`nas.data.load_pickle_batch`), ``.npz`` files
without pickles (``allow_pickle=False``).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from nas.data import Dataset, holdout, load_cifar10, load_cifar100
from nas.errors import DataError

ARRAY_KEYS = (("x", "y"), ("images", "labels"), ("x_train", "y_train"))
"""The key pairs a ``.npz`` file may hold its images and labels under (the first found).
With ``x_train``/``y_train``, ``x_test``/``y_test`` (Keras' layout) are the validation
split; otherwise a seeded, per-class split holds some out."""


def local_kind(path: str | os.PathLike | None) -> str | None:
    """The layout of ``path``: ``cifar10``, ``cifar100``, ``arrays``, ``images``, or
    ``None`` (none of them, or no such path)."""
    from nas.imagefolder import is_image_folder

    if not path:
        return None
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".npz":
        return "arrays"
    if not p.is_dir():
        return None
    if (p / "data_batch_1").is_file() and (p / "test_batch").is_file():
        return "cifar10"
    if (p / "train").is_file() and (p / "test").is_file():
        return "cifar100"
    return "images" if is_image_folder(p) else None


def load_local(path: str | os.PathLike, seed: int = 0, image_size: int = 64) -> Dataset:
    """The data at ``path`` (:func:`local_kind`); an image folder's images are stored at
    ``image_size`` x ``image_size``.

    Raises:
        DataError: ``path`` is none of the layouts, or its files are malformed.
    """
    from nas.imagefolder import load_image_folder

    kind = local_kind(path)
    if kind == "cifar10":
        return load_cifar10(path)
    if kind == "cifar100":
        return load_cifar100(path)
    if kind == "arrays":
        return load_arrays(path, seed)
    if kind == "images":
        return load_image_folder(path, seed=seed, image_size=image_size)
    raise DataError(
        f"{path} is no data this reads: give a cifar-10-batches-py or cifar-100-python "
        f"folder, an .npz file or an image folder (one subfolder of images per class)"
    )


def load_arrays(path: str | os.PathLike, seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """Images and labels from a numpy ``.npz`` file (keys: :data:`ARRAY_KEYS`).

    Images are ``(N, H, W)`` (grey) or ``(N, H, W, C)`` with 1 or 3 channels, integers
    (read as 0-255) or floats; labels ``N`` integers from 0. The channels are standardised
    with the training split's mean and standard deviation.

    Raises:
        DataError: not an ``.npz`` file, none of the key pairs, or an array of the wrong
            shape or dtype.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        line = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{p} is not a readable .npz file: {line}") from None
    xk, yk = next(((x, y) for x, y in ARRAY_KEYS if x in arrays and y in arrays), (None, None))
    if xk is None:
        pairs = ", ".join(f"{x}/{y}" for x, y in ARRAY_KEYS)
        raise DataError(f"{p} holds {sorted(arrays)[:6]}; it needs images and labels as {pairs}")
    x, y = _images(p, xk, arrays[xk]), _labels(p, yk, arrays[yk], len(arrays[xk]))
    if xk == "x_train" and "x_test" in arrays and "y_test" in arrays:
        xv, yv = _images(p, "x_test", arrays["x_test"]), arrays["y_test"]
        yv = _labels(p, "y_test", yv, len(xv))
        if xv.shape[1:] != x.shape[1:]:
            raise DataError(f"{p}: x_test is {xv.shape[1:]} per image, x_train {x.shape[1:]}")
        xtr, ytr, xva, yva = x, y, xv, yv
    else:
        val = holdout(y, seed, val_fraction, str(p))
        xtr, ytr, xva, yva = x[~val], y[~val], x[val], y[val]
    mean = xtr.mean(axis=(0, 1, 2))
    std = xtr.std(axis=(0, 1, 2)) + 1e-6
    classes = int(max(ytr.max(), yva.max())) + 1
    return Dataset("arrays", (xtr - mean) / std, ytr, (xva - mean) / std, yva, classes)


def _images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """``x`` as NHWC float32 (integers scaled to 0-1), or a one-line error."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or len(x) == 0 or min(x.shape[1:3]) < 1:
        raise DataError(
            f"{path}: {key} must be (N, H, W) or (N, H, W, C) with C 1 or 3, got {x.shape}"
        )
    if x.dtype.kind in "iu":
        return (x.astype(np.float32) / 255.0).astype(np.float32)
    if x.dtype.kind == "f":
        out = x.astype(np.float32)
        if not np.isfinite(out).all():
            raise DataError(f"{path}: {key} holds NaN or infinite values")
        return out
    raise DataError(f"{path}: {key} must hold integers or floats, got {x.dtype}")


def _labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    if y.dtype.kind not in "iu" or y.ndim != 1 or len(y) != n:
        raise DataError(
            f"{path}: {key} must be {n} integer labels (one per image), got {y.dtype} {y.shape}"
        )
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: {key} holds a negative label ({y.min()})")
    return y.astype(np.int32)


__all__ = ["ARRAY_KEYS", "load_arrays", "load_local", "local_kind"]
