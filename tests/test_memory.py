"""glibc malloc tunables (nas/memory.py): merged into the environment, applied by re-exec."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nas import memory

PRINT_AFTER_REEXEC = (
    "import os, sys; from nas import memory; memory.reexec(); "
    "print(os.environ.get('GLIBC_TUNABLES', '')); print('jax' in sys.modules)"
)


def test_merge_keeps_the_users_settings():
    merged = memory.merged_tunables("glibc.malloc.hugetlb=0:glibc.rtld.nns=2")
    parts = merged.split(":")
    assert parts[:2] == ["glibc.malloc.hugetlb=0", "glibc.rtld.nns=2"]  # user's value wins
    assert "glibc.malloc.mmap_max=0" in parts and "glibc.malloc.hugetlb=1" not in parts
    full = memory.merged_tunables(None)
    assert memory.merged_tunables(full) == full  # idempotent: nothing left to add


def _run(env: dict[str, str]) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", PRINT_AFTER_REEXEC], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_reexec_sets_the_tunables_once_and_can_be_turned_off():
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GLIBC_TUNABLES", "NAS_MALLOC_TUNED", "NAS_MALLOC_TUNING")
    }
    tunables, _ = _run(base)
    assert tunables == memory.merged_tunables(None)
    assert _run({**base, "NAS_MALLOC_TUNING": "0"})[0] == ""
    # already tuned: no second exec, the user's own value stays
    assert _run({**base, "GLIBC_TUNABLES": tunables + ":x.y=1"})[0] == tunables + ":x.y=1"


def test_no_reexec_once_jax_is_running(monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("NAS_MALLOC_TUNED", raising=False)
    monkeypatch.delenv("NAS_MALLOC_TUNING", raising=False)
    assert not memory.applies()  # jax is imported in this process
