"""Datasets for training evaluators: scikit-learn's digits (built in), a local CIFAR-10, and
byte corpora for language models (:mod:`nas.corpus`: the Python standard library, your text).

Arrays are NHWC float32, standardised; labels int32. Splits are fixed by a seed so that every
candidate of a search sees the same data.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import DataError, UnknownName
from nas.pipeline import Augment

CIFAR_ENV = "NAS_CIFAR10_DIR"


@dataclass(frozen=True)
class Dataset:
    """A train/validation split in memory."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_digits(seed: int = 0, val_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 handwritten 8x8 digits, standardised, split by ``seed``."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    x = (d.images.astype(np.float32) / 16.0)[..., None]
    x = (x - x.mean()) / x.std()
    y = d.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return Dataset("digits", x[train], y[train], x[val], y[val], 10)


def _pickle_globals() -> dict[tuple[str, str], object]:
    """The only callables a CIFAR batch may name: numpy's array rebuilders and, for
    pickles Python 3 wrote, the codec that rebuilds ``bytes``."""
    import codecs

    try:
        from numpy._core.multiarray import _reconstruct, scalar
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
        from numpy.core.numeric import _frombuffer
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): scalar,  # numpy numbers (np.int64 labels)
        ("numpy._core.multiarray", "scalar"): scalar,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global but :func:`_pickle_globals` (so no code runs)."""

    def find_class(self, module: str, name: str) -> object:
        allowed = _pickle_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which a CIFAR batch never does"
            )
        return allowed


def load_pickle_batch(path: str | os.PathLike) -> dict:
    """A CIFAR python batch (``data_batch_1``, ``test_batch``, ...), read without running code.

    ``pickle.load`` would call whatever a file names; this reads only what CIFAR batches
    hold: dicts, lists, bytes, text, numbers and numpy arrays and scalars of numbers (numpy's
    rebuilders of those are the only callables allowed). Anything else is a
    :class:`DataError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - a malformed pickle raises nearly anything
        line = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a CIFAR python batch: {line}") from None
    stack = [data]
    while stack:  # iterative: a pickle can nest deeper than Python's recursion limit
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, np.ndarray | np.generic) and item.dtype.kind not in "biuf":
            raise DataError(f"{path} is not a CIFAR python batch: it holds {item.dtype} data")
        elif not isinstance(item, bytes | str | int | float | np.ndarray | np.generic):
            raise DataError(f"{path} is not a CIFAR python batch: it holds a {type(item).__name__}")
    if not isinstance(data, dict):
        raise DataError(f"{path} is not a CIFAR python batch: it holds no dict")
    return data


def load_cifar10(folder: str | os.PathLike | None = None, limit: int | None = None) -> Dataset:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder (the python pickles).

    The folder is ``folder``, else ``$NAS_CIFAR10_DIR``. Nothing is downloaded. The batches
    are read by :func:`load_pickle_batch`, which runs no code a file names.
    """
    folder = folder or os.environ.get(CIFAR_ENV)
    if not folder:
        raise DataError(
            f"CIFAR-10 needs a local cifar-10-batches-py folder: pass --data-dir or set {CIFAR_ENV}"
        )
    root = Path(folder)
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    test = root / "test_batch"
    missing = [str(p) for p in files + [test] if not p.exists()]
    if missing:
        raise DataError(f"CIFAR-10 folder {root} is missing {missing[0]}")

    def read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for p in paths:
            d = load_pickle_batch(p)
            try:
                xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d[b"labels"], np.int32))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{p} is not a CIFAR-10 python batch: {e!r}") from None
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = read(files)
    xte, yte = read([test])
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: limit // 5], yte[: limit // 5]
    mean = np.array([0.4914, 0.4822, 0.4465], np.float32)
    std = np.array([0.2470, 0.2435, 0.2616], np.float32)

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x.transpose(0, 2, 3, 1).astype(np.float32) / 255.0) - mean) / std

    return Dataset("cifar10", prep(xtr), ytr, prep(xte), yte, 10)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered training dataset: its name, what it is, and how to load it.

    ``loader(seed, data_dir)`` returns the :class:`Dataset` (``kind="images"``) or a
    :class:`nas.corpus.TextCorpus` (``kind="text"``: bytes for language models);
    ``needs_dir`` says whether it reads a local folder (``--data-dir``) rather than shipping
    with an installed package or the interpreter.
    ``augment`` is an image set's training augmentation and evaluation view
    (:class:`nas.pipeline.Augment`; ``None``: none).
    """

    name: str
    description: str
    loader: Callable[[int, str | None], Any]
    needs_dir: bool = False
    kind: str = "images"
    augment: Any = None

    def load(self, seed: int = 0, data_dir: str | None = None) -> Any:
        return self.loader(seed, data_dir)


DIGITS = DatasetSpec(
    "digits",
    "scikit-learn's 1,797 handwritten 8x8 digits (ships with scikit-learn); served upsampled "
    "to the resolution a network takes",
    lambda seed, _dir: load_digits(seed),
    augment=Augment(crop_scale=(0.35, 1.0), flip=False, eval_crop=1.0),
)
CIFAR10 = DatasetSpec(
    "cifar10",
    f"CIFAR-10 from a local cifar-10-batches-py folder (--data-dir or ${CIFAR_ENV})",
    lambda _seed, data_dir: load_cifar10(data_dir),
    needs_dir=True,
    augment=Augment(crop_scale=(0.35, 1.0), flip=True, eval_crop=1.0),
)


def _stdlib(_seed: int, _dir: str | None) -> Any:
    from nas.corpus import load_stdlib

    return load_stdlib()


def _text(_seed: int, data_dir: str | None) -> Any:
    from nas.corpus import load_text

    return load_text(data_dir)


STDLIB = DatasetSpec(
    "stdlib",
    "the Python standard library's source as bytes, split by module (language models)",
    _stdlib,
    kind="text",
)
TEXT = DatasetSpec(
    "text",
    "your text files as bytes (--data-dir FILE_OR_FOLDER), split by file (language models)",
    _text,
    needs_dir=True,
    kind="text",
)


def load_dataset(name: str, seed: int = 0, data_dir: str | None = None) -> Any:
    """A training dataset by its registered name (``digits``, ``cifar10``, ``stdlib``,
    ``text``, plugins'): a :class:`Dataset`, or a :class:`nas.corpus.TextCorpus` for text."""
    from nas import registry

    if name not in registry.entries("datasets"):
        raise UnknownName(
            f"no training data for dataset {name!r}; choose one of {registry.names('datasets')}"
        )
    spec = registry.load("datasets", name)
    if not isinstance(spec, DatasetSpec):
        spec = spec()
    return spec.load(seed, data_dir)
