"""Reading input the platform does not control: files, JSON, text quoted back in errors.

Architecture files, exported folders and saved predictors may come from anyone. Everything
read from them goes through these few functions, so that one policy holds everywhere:

- a file is read only when it is a regular file (``/dev/zero`` or a FIFO named as an
  architecture would never end) and only up to :data:`MAX_FILE_BYTES`;
- JSON is nested at most :data:`MAX_JSON_DEPTH` levels (deeper input would exhaust Python's
  recursion in the parser or in the code walking the result);
- an error quotes at most a short :func:`excerpt` of the input, never the whole of it;
- a safetensors file (which executes no code on load) must have a valid header.

Each function raises the caller's :class:`~nas.errors.NasError` subclass, so that a bad
genotype stays an ``InvalidGenotype`` and a bad data file a ``DataError``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from nas.errors import DataError, NasError

MAX_FILE_BYTES = 16 * 2**20  # an exported DARTS network's arch.json is well under 1 MB
MAX_JSON_DEPTH = 64  # exported documents nest about 7 levels
EXCERPT_CHARS = 80


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how much was left out."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def kind(path: str | os.PathLike) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (a device, a FIFO, ...) or ``None`` when ``path``
    does not exist or cannot be a path at all (a 200 KB genotype string is not one)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ENAMETOOLONG, ENOENT, ELOOP, an embedded NUL, ...
        return None
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def read_text(
    path: str | os.PathLike,
    what: str,
    error: type[NasError] = DataError,
    limit: int = MAX_FILE_BYTES,
) -> str:
    """The UTF-8 text of the regular file ``path``, refused beyond ``limit`` bytes.

    Raises:
        error: ``path`` is missing, not a regular file, unreadable, too large or not UTF-8.
    """
    p = Path(path)
    try:
        st = p.stat()  # stat never blocks, where opening a FIFO would
    except OSError as e:
        raise error(f"{what} {p} cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {p} is not a regular file")
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise error(f"{what} {p} cannot be read: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{what} {p} is larger than {limit // 2**20} MiB; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {p} is not UTF-8 text (byte {e.start})") from None


def parse_json(
    text: str, what: str, error: type[NasError] = DataError, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """``json.loads(text)``, with malformed or too deeply nested input as ``error``."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise error(f"{what} is nested too deeply (more than {max_depth} levels)") from None
    except ValueError as e:  # JSONDecodeError, and int() of a 5,000-digit number
        raise error(f"{what} is not valid JSON: {str(e).splitlines()[0][:120]}") from None
    if json_depth(data, max_depth) > max_depth:
        raise error(f"{what} is nested too deeply (more than {max_depth} levels)")
    return data


def read_json(path: str | os.PathLike, what: str, error: type[NasError] = DataError) -> Any:
    """:func:`read_text` then :func:`parse_json`: a JSON file from outside."""
    return parse_json(read_text(path, what, error), f"{what} {path}", error)


def read_safetensors(
    path: str | os.PathLike, what: str = "weights file", error: type[NasError] = DataError
) -> dict[str, Any]:
    """Every tensor of the safetensors file ``path`` (numpy arrays by name).

    Raises:
        error: the file is missing, not a regular file, or not a valid safetensors file
            (a bad header, a truncated file).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = Path(path)
    found = kind(p)
    if found != "file":
        raise error(f"{what} {p} {'does not exist' if found is None else 'is not a file'}")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        line = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise error(f"{what} {p} is not a valid safetensors file ({line})") from None


def json_depth(data: Any, stop: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of lists and dicts in ``data`` (counted without recursion; the count
    stops just past ``stop``)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            return deepest
        stack.extend((child, depth + 1) for child in item)
    return deepest
