"""Datasets for training evaluators: scikit-learn's digits (built in), local CIFAR-10 and
CIFAR-100 python folders, and byte corpora for language models (:mod:`nas.corpus`: the
Python standard library, your text). Numpy arrays and image folders: :mod:`nas.localdata`.

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
CIFAR100_ENV = "NAS_CIFAR100_DIR"


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


def holdout(
    y: np.ndarray, seed: int, fraction: float, where: str, names: list[str] | None = None
) -> np.ndarray:
    """A seeded, per-class validation mask holding out ``fraction`` of every class.

    Raises:
        DataError: a class too small to hold out at least one image and keep one (the
            message names the data, ``where``, and the class, by ``names`` if given).
    """
    rng = np.random.default_rng([seed, 2])
    val = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * fraction))
        if k < 1 or k >= len(idx):
            raise DataError(
                f"class {names[c] if names else int(c)!r} of {where} has {len(idx)} image(s): too few to hold out "
                f"{fraction:.0%} for validation"
            )
        val[idx[:k]] = True
    return val


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


def _cifar_split(path: Path, label_key: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels of one CIFAR python pickle."""
    d = load_pickle_batch(path)
    try:
        x = np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[label_key], np.int32).reshape(-1)
    except KeyError as e:
        raise DataError(
            f"{path} is not a {name} python batch: it has no key {e.args[0]!r}"
        ) from None
    except (TypeError, ValueError) as e:
        line = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DataError(f"{path} is not a {name} python batch: {line}") from None
    if len(x) != len(y):
        raise DataError(f"{path} is not a {name} python batch: {len(x)} images, {len(y)} labels")
    return x, y


def _cifar_dataset(
    name: str,
    train: list[Path],
    test: Path,
    label_key: bytes,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    classes: int,
    limit: int | None,
) -> Dataset:
    """A CIFAR python folder's pickles as a standardised :class:`Dataset`."""
    missing = [str(p) for p in train + [test] if not p.exists()]
    if missing:
        raise DataError(f"{name} folder {test.parent} is missing {missing[0]}")
    parts = [_cifar_split(p, label_key, name) for p in train]
    xtr, ytr = np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])
    xte, yte = _cifar_split(test, label_key, name)
    for split, y in ((train[0], ytr), (test, yte)):
        if len(y) and (y.min() < 0 or y.max() >= classes):
            raise DataError(f"{split}: labels must lie in 0..{classes - 1}, found {y.max()}")
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[: limit // 5], yte[: limit // 5]
    mean, std = (np.array(v, np.float32) for v in stats)

    def prep(x: np.ndarray) -> np.ndarray:
        return ((x.transpose(0, 2, 3, 1).astype(np.float32) / 255.0) - mean) / std

    return Dataset(name, prep(xtr), ytr, prep(xte), yte, classes)


def _cifar_folder(folder: str | os.PathLike | None, env: str, what: str) -> Path:
    folder = folder or os.environ.get(env)
    if not folder:
        raise DataError(f"{what} needs a local folder: pass --data-dir or set {env}")
    return Path(folder)


def load_cifar10(folder: str | os.PathLike | None = None, limit: int | None = None) -> Dataset:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder (the python pickles).

    The folder is ``folder``, else ``$NAS_CIFAR10_DIR``. Nothing is downloaded. The batches
    are read by :func:`load_pickle_batch`, which runs no code a file names.
    """
    root = _cifar_folder(folder, CIFAR_ENV, "CIFAR-10 (a cifar-10-batches-py folder)")
    train = [root / f"data_batch_{i}" for i in range(1, 6)]
    stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    return _cifar_dataset("cifar10", train, root / "test_batch", b"labels", stats, 10, limit)


def load_cifar100(folder: str | os.PathLike | None = None, limit: int | None = None) -> Dataset:
    """CIFAR-100 from a local ``cifar-100-python`` folder: the ``train`` and ``test``
    pickles, labelled by their 100 ``fine_labels``.

    The folder is ``folder``, else ``$NAS_CIFAR100_DIR``. Nothing is downloaded; the pickles
    are read by :func:`load_pickle_batch`, which runs no code a file names.
    """
    root = _cifar_folder(folder, CIFAR100_ENV, "CIFAR-100 (a cifar-100-python folder)")
    stats = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    return _cifar_dataset(
        "cifar100", [root / "train"], root / "test", b"fine_labels", stats, 100, limit
    )


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
CIFAR100 = DatasetSpec(
    "cifar100",
    f"CIFAR-100 (fine labels) from a local cifar-100-python folder (--data-dir or ${CIFAR100_ENV})",
    lambda _seed, data_dir: load_cifar100(data_dir),
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
