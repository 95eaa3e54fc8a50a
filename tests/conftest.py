"""Shared test fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.paths import data_path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def require_data(relative: str) -> Path:
    """A reference data file: under CI its absence fails the test, elsewhere it skips."""
    path = data_path(relative)
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"reference data {path} is missing under CI")
        pytest.skip(f"reference data {path} not present")
    return path


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``nas`` in a fresh process (JAX never forks); ``env`` adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "nas.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, **env} if env else None,
    )


def _native(item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    named = any(isinstance(v, str) and v == "native" for v in params.values())
    return named or item.module.__name__.endswith("test_kernels")


def pytest_collection_modifyitems(config, items) -> None:
    """The native kernels are CPU code (nas.kernels): on another JAX backend (the GPU run of
    benchmarks/gpu.sh) their tests, and tests parametrised with ``native``, are skipped."""
    if os.environ.get("JAX_PLATFORMS") == "cpu" or not any(_native(i) for i in items):
        return
    import jax

    if jax.default_backend() == "cpu":
        return
    skip = pytest.mark.skip(reason=f"native CPU kernels: not on {jax.default_backend()}")
    for item in items:
        if _native(item):
            item.add_marker(skip)
