"""Image folders (one subfolder per class, PNG or JPEG) as training data.

``load_image_folder(path)`` reads every image once, converts it to RGB, resizes its shorter
side to ``image_size`` and centre-crops it square (the stored size; :mod:`nas.pipeline`
crops and resizes from there to whatever resolution a network takes), and standardises the
channels with the training split's mean and standard deviation. A folder with ``train/``
and ``val/`` subfolders (ImageNet's layout) keeps that split; otherwise a seeded,
per-class split holds out ``val_fraction`` of the images.

This reads the whole folder into memory: it is for folders of up to some tens of thousands
of small images, not for ImageNet.

:func:`retarget` adapts a space's network to such data: the same architecture with the
folder's input size and number of classes (every network here ends in a global pool, so
only the input node and the classifier change).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from nas.data import Dataset, holdout
from nas.errors import DataError, GraphError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def is_image_folder(path: str | Path | None) -> bool:
    """Whether ``path`` looks like an image folder (a subfolder holding an image)."""
    if not path or not Path(path).is_dir():
        return False
    root = Path(path)
    for sub in (root / "train", root):
        if sub.is_dir() and any(_images(d) for d in sub.iterdir() if d.is_dir()):
            return True
    return False


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)


def _classes(root: Path) -> list[Path]:
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    dirs = [d for d in dirs if _images(d)]
    if len(dirs) < 2:
        raise DataError(
            f"{root} is not an image folder: it needs a subfolder of PNG/JPEG images per "
            f"class, at least two (found {len(dirs)})"
        )
    return dirs


def _read(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)), np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path} is not a readable image: {e}") from None


def _load_split(dirs: list[Path], names: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for d in dirs:
        if d.name not in names:
            raise DataError(f"class folder {d} has no counterpart among the training classes")
        for p in _images(d):
            xs.append(_read(p, size))
            ys.append(names.index(d.name))
    return np.stack(xs), np.asarray(ys, np.int32)


def load_image_folder(
    path: str | Path, seed: int = 0, image_size: int = 64, val_fraction: float = 0.2
) -> Dataset:
    """An image folder as a standardised NHWC float32 :class:`~nas.data.Dataset` (name
    ``folder``), images stored at ``image_size`` x ``image_size``.

    Raises:
        DataError: no such folder, fewer than two class folders, an unreadable image, or a
            class too small to hold out a validation image.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_dirs = _classes(root / "train")
        names = [d.name for d in train_dirs]
        xtr, ytr = _load_split(train_dirs, names, image_size)
        xva, yva = _load_split(_classes(root / "val"), names, image_size)
    else:
        dirs = _classes(root)
        names = [d.name for d in dirs]
        x, y = _load_split(dirs, names, image_size)
        val = holdout(y, seed, val_fraction, str(root), names)
        xtr, ytr, xva, yva = x[~val], y[~val], x[val], y[val]
    xtr_f = xtr.astype(np.float32) / 255.0
    mean = xtr_f.mean(axis=(0, 1, 2))
    std = xtr_f.std(axis=(0, 1, 2)) + 1e-6

    def prep(a: np.ndarray) -> np.ndarray:
        return ((a.astype(np.float32) / 255.0 - mean) / std).astype(np.float32)

    return Dataset("folder", prep(xtr), ytr, prep(xva), yva, len(names))


def retarget(graph, input_shape: tuple[int, int, int], n_classes: int):
    """A copy of ``graph`` (an :class:`~nas.graph.ArchGraph`) taking ``input_shape`` and
    predicting ``n_classes``: the input node's shape and the last dense layer change, every
    other shape is inferred again.

    Raises:
        GraphError: the network has no dense classifier, or does not fit the input size.
    """
    g = copy.deepcopy(graph)
    nodes = g.topological()
    dense = [n for n in nodes if g.op(n) == "dense"]
    if not dense:
        raise GraphError("the network has no dense classifier to give the folder's classes")
    g.g.nodes[g.input]["attrs"]["shape"] = list(input_shape)
    g.g.nodes[dense[-1]]["attrs"]["out_features"] = int(n_classes)
    g.meta.update(dataset="folder", resolution=int(input_shape[0]))
    return g.finalize()


__all__ = ["EXTENSIONS", "is_image_folder", "load_image_folder", "retarget"]
