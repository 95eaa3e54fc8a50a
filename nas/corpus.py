"""Byte-level text corpora for language models: the Python standard library, or your files.

``stdlib`` is the source of the running interpreter's standard library (every ``.py`` file
under ``sysconfig.get_paths()["stdlib"]`` except the test suites, ``site-packages`` and
``__pycache__``, and the generated tables of ``encodings`` and ``pydoc_data``): about 10 MB
of text that every machine with Python has, no download. It is split into training and
validation *by module* (the top-level module or package a file belongs to): modules are
ordered by the SHA-256 of their names and go to validation until it holds a tenth of the
bytes, so no module is seen in both and the split does not depend on any seed. Different Python
versions ship different standard libraries: :attr:`TextCorpus.fingerprint` identifies the
corpus, and numbers measured on one are comparable only with the same fingerprint.

``text`` reads a file or a folder of your own (``--data-dir``): every file without NUL
bytes, split by file the same way (a single file: its last tenth is validation).

Models read bytes (vocabulary 256); scores are bits per byte on the validation split.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas.errors import DataError

VOCAB = 256
"""Byte-level: every corpus has 256 symbols."""
TEXT_LIMIT = 2**30
"""The most bytes a ``text`` corpus may hold (it is read into memory)."""

_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)
_GENERATED = frozenset({"encodings", "pydoc_data"})
"""Standard-library packages that are generated tables (codec charmaps, the pydoc topics
dump) rather than written source: left out of the corpus."""


@dataclass(frozen=True)
class TextCorpus:
    """A byte corpus split into training and validation.

    Attributes:
        name: ``stdlib``, ``text`` or a plugin's name.
        train: training bytes (uint8).
        val: validation bytes (uint8).
        files: (training files, validation files).
        fingerprint: SHA-256 (16 hex digits) of the file names and contents.
        source: where the text came from.
    """

    name: str
    train: np.ndarray
    val: np.ndarray
    files: tuple[int, int]
    fingerprint: str
    source: str

    vocab: int = VOCAB

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "train_bytes": int(self.train.size),
            "val_bytes": int(self.val.size),
            "train_files": self.files[0],
            "val_files": self.files[1],
            "fingerprint": self.fingerprint,
            "source": self.source,
        }


def _validation_keys(sizes: dict[str, int]) -> set[str]:
    """Keys (modules, files) taken in SHA-256 order of their names until they hold a tenth
    of the bytes: deterministic, independent of any seed, about 10% validation."""
    order = sorted(sizes, key=lambda k: hashlib.sha256(k.encode()).hexdigest())
    total, held, out = sum(sizes.values()), 0, set()
    for key in order:
        if held >= total / 10:
            break
        out.add(key)
        held += sizes[key]
    return out


def _join(parts: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(parts), np.uint8).copy() if parts else np.zeros(0, np.uint8)


def _split(name: str, files: list[tuple[str, str, bytes]], source: str) -> TextCorpus:
    """``files``: (split key, relative name, content), sorted by name."""
    digest = hashlib.sha256()
    sizes: dict[str, int] = {}
    for key, rel, data in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        sizes[key] = sizes.get(key, 0) + len(data)
    held_out = _validation_keys(sizes)
    train: list[bytes] = []
    val: list[bytes] = []
    for key, _, data in files:
        (val if key in held_out else train).append(data)
    if len(files) == 1:  # one file: its last tenth validates
        data = files[0][2]
        cut = len(data) - len(data) // 10
        train, val = [data[:cut]], [data[cut:]]
    corpus = TextCorpus(
        name,
        _join(train),
        _join(val),
        (len(train), len(val)),
        digest.hexdigest()[:16],
        source,
    )
    if corpus.train.size < 1024 or corpus.val.size < 1024:
        raise DataError(
            f"{source}: {corpus.train.size} training and {corpus.val.size} validation bytes; "
            "a language model needs at least 1 KiB of each"
        )
    return corpus


def stdlib_root() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def load_stdlib() -> TextCorpus:
    """The standard library's Python source, split by module (see the module docstring)."""
    root = stdlib_root()
    files = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        module = rel.parts[0].removesuffix(".py")
        if module in _GENERATED:
            continue
        try:
            files.append((module, rel.as_posix(), p.read_bytes()))
        except OSError:  # pragma: no cover - an unreadable file is left out
            continue
    if not files:
        raise DataError(f"no Python source under {root}: is the standard library installed?")
    return _split("stdlib", files, f"Python standard library at {root}")


def load_text(path: str | Path | None) -> TextCorpus:
    """Your own text: a file, or every file without NUL bytes under a folder."""
    if not path:
        raise DataError("the text dataset reads your files: pass --data-dir FILE_OR_FOLDER")
    root = Path(path)
    if not root.exists():
        raise DataError(f"text data {root} does not exist")
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in paths)
    if total > TEXT_LIMIT:
        raise DataError(
            f"text data {root} holds {total / 2**30:.1f} GiB; the byte corpus is read into "
            f"memory, at most {TEXT_LIMIT / 2**30:.0f} GiB: point --data-dir at less"
        )
    files = []
    for p in paths:
        data = p.read_bytes()
        if b"\0" in data or not data:
            continue  # binary or empty
        rel = p.name if p == root else p.relative_to(root).as_posix()
        files.append((rel, rel, data))
    if not files:
        raise DataError(f"no text files (without NUL bytes) under {root}")
    return _split("text", files, str(root))
