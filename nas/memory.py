"""glibc malloc settings for XLA:CPU, applied by re-executing the entry point.

XLA:CPU allocates each execution's temporary buffer (about 2 GB for an OFA-MobileNetV3
training step at batch 32, 128x128) with ``posix_memalign`` and frees it when the execution
ends. glibc serves a block that large with a fresh ``mmap`` and returns it with ``munmap``,
so every step first-touches 2 GB of new 4 KiB pages: 490,000 page faults and 0.77 s of
kernel time per step, 43% of the step's CPU time (measured with ``getrusage`` in the step
loop). Three glibc tunables remove it:

- ``glibc.malloc.hugetlb=1``: malloc asks for transparent huge pages (``madvise``), so a
  fresh region faults in 2 MiB pages;
- ``glibc.malloc.mmap_max=0``: large blocks come from malloc's arenas, not one-off maps;
- ``glibc.malloc.trim_threshold=64 GiB``: freed arena memory is kept and reused by the next
  step instead of being returned to the kernel (the process keeps its peak footprint).

Measured on this 2-core machine (``benchmarks/ofa_supernet.py``; steady-state step of
OFA-MobileNetV3, batch 32 at 128x128): largest subnet 0.99 -> 0.69 s, random subnet
0.78 -> 0.44 s, smallest 0.68 -> 0.30 s.

glibc reads tunables only when a process starts, so :func:`reexec` re-executes the current
command with them set (``os.execve``: the same process, no fork), before JAX is imported. The
``nas`` CLI does this at start-up; the Makefile exports the same variable. Set
``NAS_MALLOC_TUNING=0`` to opt out. Ray workers inherit the environment of the driver.
"""

from __future__ import annotations

import os
import platform
import sys

TUNABLES = {
    "glibc.malloc.hugetlb": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(64 << 30),
}
_MARK = "NAS_MALLOC_TUNED"


def merged_tunables(current: str | None) -> str:
    """``current`` (a ``GLIBC_TUNABLES`` value) with :data:`TUNABLES` added; settings already
    there are kept as they are."""
    parts = [p for p in (current or "").split(":") if p]
    have = {p.split("=", 1)[0] for p in parts}
    parts += [f"{k}={v}" for k, v in TUNABLES.items() if k not in have]
    return ":".join(parts)


def tuned_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) with the tunables merged in."""
    out = dict(os.environ if env is None else env)
    out["GLIBC_TUNABLES"] = merged_tunables(out.get("GLIBC_TUNABLES"))
    return out


def applies() -> bool:
    """Whether :func:`reexec` would act: glibc Linux, not opted out, not yet tuned, and JAX
    not yet imported (its allocator is already running then)."""
    if os.environ.get("NAS_MALLOC_TUNING", "1") == "0" or os.environ.get(_MARK):
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "jax" in sys.modules:
        return False
    current = os.environ.get("GLIBC_TUNABLES")
    return merged_tunables(current) != (current or "")


def reexec() -> None:
    """Re-execute this process's command line with the tunables (returns only when they are
    already set or do not apply)."""
    if not applies():
        return
    env = tuned_env()
    env[_MARK] = "1"  # never loops, even where glibc ignores the variable
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *argv[1:]], env)
