"""Where the platform finds reference data (the tables ``nas data`` knows).

A reference file (``nasbench/...``, ``ofa/...``: the layout of ``nas/refdata.json``) is read
from the first of these folders that holds it:

1. ``$NAS_DATA_DIR``, when it is set: then it is the only folder looked in;
2. ``shared/data`` beside the source checkout (a developer's tree, CI);
3. the user cache folder, ``$XDG_CACHE_HOME/nas/data`` or ``~/.cache/nas/data``, where
   ``nas data fetch`` writes by default.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "NAS_DATA_DIR"


def user_data_dir() -> Path:
    """The user cache folder for reference data (``nas data fetch``'s default target)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nas" / "data"


def data_home() -> Path:
    """Where ``nas data fetch`` writes: ``$NAS_DATA_DIR``, else :func:`user_data_dir`."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else user_data_dir()


def checkout_data_dir() -> Path | None:
    """``shared/data`` beside the checkout this package runs from, if there is one."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return None


def data_roots() -> list[Path]:
    """The folders looked in, in order (module docstring)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return [Path(env)]
    checkout = checkout_data_dir()
    return [*([checkout] if checkout else []), user_data_dir()]


def data_path(relative: str | Path) -> Path:
    """The reference file ``relative`` in the first folder that holds it; where none does,
    its path in :func:`data_home` (where ``nas data fetch`` would put it)."""
    for root in data_roots():
        if (root / relative).exists():
            return root / relative
    return data_home() / relative


def shared_data_dir() -> Path:
    """The first data folder that exists (or :func:`data_home`): for callers that list a
    folder rather than open one file; prefer :func:`data_path`."""
    return next((r for r in data_roots() if r.is_dir()), data_home())


MISSING_HINT = f"run `nas data fetch` or set {DATA_ENV}"
"""What an error about a missing reference file tells the user to do."""
