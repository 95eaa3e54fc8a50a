"""Where the platform reads and writes files: one path policy.

- Reading on behalf of a stored study: a path it names is resolved (symlinks followed) and
  used only when it lies inside the study's run folder (:func:`inside`), so a shared or
  downloaded study cannot make ``nas export`` read or copy any other file.
- Writing: an output folder or file is checked before any work starts (an existing file
  where a folder is wanted, a folder that cannot be written), and missing parent folders
  are created only inside the working directory; elsewhere the user creates them. The
  folders created are returned so that the command can say what it created.
- Sharing: a file that several workers of one search may produce (a trained supernet) is
  made under an exclusive lock (:func:`exclusive`) and written under a temporary name, then
  renamed into place (:func:`write_atomically`), so no worker reads half a file.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nas.errors import ConfigError, StorageError

log = logging.getLogger(__name__)


def inside(path: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """``path`` resolved (symlinks followed, relative to the working directory), or
    ``None`` when it lies outside ``root`` (resolved the same way)."""
    resolved = Path(path).resolve()
    return resolved if resolved.is_relative_to(Path(root).resolve()) else None


def output_dir(path: str | os.PathLike, what: str = "--out") -> tuple[Path, list[Path]]:
    """The folder ``path``, ready to write into: ``(folder, folders created)``.

    Raises:
        ConfigError: ``path`` is an existing file, a missing parent lies outside the working
            directory, or the folder cannot be created or written.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is an existing file, not a folder")
    created = _make_dirs(folder, what, allow_self=True)
    _check_writable(folder, what)
    return folder, created


def output_file(path: str | os.PathLike, what: str = "--out") -> tuple[Path, list[Path]]:
    """The file ``path``, ready to be (over)written: ``(file, folders created)``.

    Raises:
        ConfigError: ``path`` is a folder, its folder cannot be created here or written.
    """
    file = Path(path)
    if file.is_dir():
        raise ConfigError(f"{what} {file} is a folder; name a file inside it")
    created = _make_dirs(file.parent, what, allow_self=False)
    _check_writable(file.parent, what)
    return file, created


def missing_folders(folder: str | os.PathLike) -> list[Path]:
    """``folder`` and its parents that do not exist yet, outermost first."""
    missing = []
    p = Path(folder)
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    return list(reversed(missing))


def _make_dirs(folder: Path, what: str, allow_self: bool) -> list[Path]:
    """Create ``folder`` and its missing parents; parents (and ``folder`` itself unless
    ``allow_self``) only inside the working directory."""
    missing = missing_folders(folder)
    cwd = Path.cwd()
    for m in missing:
        if m.is_symlink():  # a dangling link: creating through it would write elsewhere
            raise ConfigError(f"{what}: {m} is a broken symbolic link")
        if (allow_self and m == folder) or inside(m, cwd) is not None:
            continue
        raise ConfigError(
            f"{what}: folder {m} does not exist, and is outside the working directory; "
            "create it first"
        )
    first = missing[0].parent if missing else folder
    if not first.is_dir():
        raise ConfigError(f"{what}: {first} is not a folder")
    for m in missing:
        try:
            m.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise ConfigError(f"{what}: cannot create folder {m}: {e.strerror or e}") from None
        log.info("created folder %s", m)
    return missing


def _check_writable(folder: Path, what: str) -> None:
    """Try a scratch file: ``os.access`` is wrong for root and for read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ConfigError(f"{what}: cannot write into {folder}: {e.strerror or e}") from None


@contextmanager
def exclusive(path: str | os.PathLike, waiting: str = "") -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (created if missing) for the block.

    Processes of one machine (Ray workers, two ``--join`` drivers) that make the same file
    take turns: the second waits until the first leaves the block (``waiting``, if given,
    is printed on stderr once while it waits). The kernel drops the lock when its holder
    dies, so a killed worker never leaves it taken.

    Raises:
        StorageError: the lock file cannot be created or locked (a read-only folder, a
            file system without locks).
    """
    import fcntl

    lock = Path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a+")  # noqa: SIM115 - closed below, after unlocking
    except OSError as e:
        raise StorageError(f"cannot create the lock file {lock}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:
            raise StorageError(f"cannot lock {lock}: {e.strerror or e}") from None
        yield
    finally:
        f.close()  # closing releases the lock


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Make ``path`` by ``write(temporary)`` then one rename, so that a reader finds either
    no file or the whole file; a failed ``write`` leaves no temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
