"""The reference tables the platform can use, and ``nas data list|verify|fetch``.

``refdata.json`` (beside this module) names every file of every table: its path in the data
layout (``nasbench/...``, ``ofa/...``, the layout of ``shared/data``), its public URL (pinned
to a commit of the repository that publishes it), its size and its SHA-256, and per table a
description, its source and its licence. :mod:`nas.paths` says in which folders the spaces
look for these files.

``fetch`` downloads into :func:`nas.paths.data_home` (``$NAS_DATA_DIR``, else the user cache
folder). Each file is written under a temporary name while its size and SHA-256 are
checked, and renamed into place only when both match: a truncated, oversized or corrupted
download is refused and removed, never left where a space would read it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nas.errors import DataError, UnknownName
from nas.paths import data_home, data_roots

MANIFEST = Path(__file__).with_name("refdata.json")
CHUNK = 1 << 16
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RefFile:
    """One file of a table: where it sits in the data layout and what it must be."""

    path: str
    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RefTable:
    """A reference table: one or more files published together."""

    name: str
    description: str
    used_by: str
    source: str
    licence: str
    files: tuple[RefFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@functools.cache
def tables() -> dict[str, RefTable]:
    """Every known table, by name (from ``refdata.json``)."""
    doc = json.loads(MANIFEST.read_text())
    out = {}
    for name, t in doc["tables"].items():
        files = tuple(RefFile(**f) for f in t["files"])
        fields = {k: t[k] for k in ("description", "used_by", "source", "licence")}
        out[name] = RefTable(name=name, files=files, **fields)
    return out


def select(names: Sequence[str] | None) -> list[RefTable]:
    """The tables named (all of them for none); an unknown name lists the known ones."""
    known = tables()
    if not names:
        return list(known.values())
    bad = [n for n in names if n not in known]
    if bad:
        raise UnknownName(f"unknown reference table {bad[0]!r}; choose from {sorted(known)}")
    return [known[n] for n in dict.fromkeys(names)]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_file(f: RefFile, root: Path) -> str:
    """``ok``, ``missing``, ``wrong size`` or ``wrong checksum`` for ``f`` under ``root``."""
    p = root / f.path
    if not p.is_file():
        return "missing"
    if p.stat().st_size != f.size:
        return "wrong size"
    return "ok" if sha256_of(p) == f.sha256 else "wrong checksum"


def _where(f: RefFile, roots: Sequence[Path]) -> Path | None:
    return next((r for r in roots if (r / f.path).is_file()), None)


def verify(names: Sequence[str] | None = None, root: Path | None = None) -> list[dict]:
    """Check the files of the named tables where the spaces would read them (each in the
    first data folder that holds it; only ``root`` when given). One row per table: its
    name, file count, and the files that are missing or bad (with the reason and folder)."""
    roots = [root] if root else data_roots()
    rows = []
    for t in select(names):
        missing, bad = [], []
        for f in t.files:
            where = _where(f, roots)
            if where is None:
                missing.append(f.path)
                continue
            status = check_file(f, where)
            if status != "ok":
                bad.append({"path": f.path, "folder": str(where), "problem": status})
        folders = sorted({str(w) for f in t.files if (w := _where(f, roots))})
        rows.append(
            {
                "table": t.name,
                "files": len(t.files),
                "ok": len(t.files) - len(missing) - len(bad),
                "missing": missing,
                "bad": bad,
                "folders": folders,
            }
        )
    return rows


def listing() -> list[dict]:
    """Every table with its size, source, licence and where it is present (no hashing)."""
    roots = data_roots()
    rows = []
    for t in tables().values():
        present = [f for f in t.files if _where(f, roots)]
        rows.append(
            {
                "table": t.name,
                "files": len(t.files),
                "bytes": t.size,
                "present": len(present),
                "folders": sorted({str(_where(f, roots)) for f in present}),
                "description": t.description,
                "used_by": t.used_by,
                "source": t.source,
                "url": t.files[0].url if len(t.files) == 1 else _common_prefix(t),
                "licence": t.licence,
            }
        )
    return rows


def _common_prefix(t: RefTable) -> str:
    prefix = os.path.commonprefix([f.url for f in t.files])
    return prefix[: prefix.rfind("/") + 1]


def source_url(f: RefFile, mirror: str | None) -> str:
    """The URL ``f`` is fetched from: its own, or ``mirror`` + its path in the data layout."""
    if mirror is None:
        return f.url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(f.path)


def _ignore(n: int) -> None:
    """A progress sink that shows nothing."""


def _stream(url: str, tmp: Path, f: RefFile, advance: Callable[[int], None]) -> tuple[int, str]:
    """Write ``url``'s body to ``tmp``; its length and SHA-256. Refuses to read past the
    expected size (a wrong file is not downloaded whole)."""
    h = hashlib.sha256()
    n = 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r, open(tmp, "wb") as out:
            while block := r.read(CHUNK):
                n += len(block)
                if n > f.size:
                    return n, ""
                h.update(block)
                out.write(block)
                advance(len(block))
    except urllib.error.HTTPError as e:
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        raise DataError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    return n, h.hexdigest()


def download(f: RefFile, root: Path, url: str, advance: Callable[[int], None] = _ignore) -> Path:
    """Fetch ``url`` into ``root / f.path`` after checking its size and SHA-256.

    Raises:
        DataError: the download failed or its bytes are not the file's; nothing is left at
            the destination or under the temporary name.
    """
    dest = root / f.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        n, digest = _stream(url, tmp, f, advance)
        if n != f.size:
            what = "truncated" if n < f.size else "too long"
            raise DataError(f"{url}: {what} ({n:,} bytes, expected {f.size:,}); refused")
        if digest != f.sha256:
            raise DataError(f"{url}: SHA-256 {digest[:16]}... is not {f.sha256[:16]}...; refused")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch(
    names: Sequence[str] | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> dict:
    """Download the named tables' files (all for none) into :func:`nas.paths.data_home`,
    skipping those already there and intact; a bad file there is fetched again.

    Args:
        names: table names (:func:`tables`).
        mirror: a base URL under which the files sit in the data layout (``shared/data``'s),
            instead of their own URLs.
        progress: show a progress bar (rich) over the bytes to fetch.

    Returns:
        ``{"folder", "fetched", "present", "bytes"}``: the files downloaded and those that
        were already there.

    Raises:
        DataError: a file could not be fetched or was refused (the others are kept).
    """
    root = data_home()
    todo, present = [], []
    for t in select(names):
        for f in t.files:
            (present if check_file(f, root) == "ok" else todo).append(f)
    errors: list[str] = []
    with _bar(progress, sum(f.size for f in todo)) as advance:
        for f in todo:
            try:
                download(f, root, source_url(f, mirror), advance)
            except DataError as e:
                errors.append(str(e))
    if errors:
        raise DataError(f"{len(errors)} of {len(todo)} files not fetched; first: {errors[0]}")
    return {
        "folder": str(root),
        "fetched": [f.path for f in todo],
        "present": [f.path for f in present],
        "bytes": sum(f.size for f in todo),
    }


@contextlib.contextmanager
def _bar(on: bool, total: int) -> Iterator[Callable[[int], None]]:
    """A rich byte-progress bar over ``total`` bytes (or nothing); yields its advance."""
    if not on or total == 0:
        yield _ignore
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("fetching"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("fetch", total=total)
        yield lambda n: bar.advance(task, n)
