"""Where the platform finds reference data."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "NAS_DATA_DIR"


def shared_data_dir() -> Path:
    """The reference data folder: ``$NAS_DATA_DIR``, else ``shared/data`` beside the checkout."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path.cwd().parent / "shared" / "data"
