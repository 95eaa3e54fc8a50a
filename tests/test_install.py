"""The packaging's done-when check: ``.ci/check-install`` builds a wheel and an sdist and
installs each by its distribution name into a fresh venv that already holds numpy 2.3.5 and
scipy 1.16.3 (downloads from the package index: minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_and_sdist_install_beside_a_users_numpy_and_scipy():
    done = subprocess.run(
        ["bash", ".ci/check-install"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=2400,
        env={**os.environ, "PY": sys.executable},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "wheel ok: numpy 2.3.5 scipy 1.16.3" in done.stdout
    assert "sdist ok: numpy 2.3.5 scipy 1.16.3" in done.stdout
    assert "3,349,342" in done.stdout  # nas inspect --arch DARTS_V2 from the installed wheel
