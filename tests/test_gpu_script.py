"""``benchmarks/gpu.sh --smoke``: the GPU check runs end to end on the CPU at tiny sizes, so it
is ready for a GPU machine. A peer that is not installed (NNI, ofa: torch is not a project
dependency) is recorded as skipped, not failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _smoke(out: Path, parts: str | None) -> dict:
    env = {**os.environ, "PYTHON": sys.executable}
    if parts:
        env["GPU_PARTS"] = parts
    done = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads((out / "gpu.json").read_text())
    assert doc["mode"] == "smoke" and doc["env"]["backend"] == "cpu"
    assert doc["tests"]["tests"] >= 5 and doc["tests"]["failures"] == 0
    assert doc["tests"]["errors"] == 0
    return doc["steps"]


def _peers_ok(steps: dict, parts: list[str]) -> None:
    for part in parts:
        r = steps[part]
        assert "step_s" in r or r["skipped"].startswith(part.split("-")[1]), r


def test_gpu_script_smoke(tmp_path):
    """The whole script, with the cheapest of our supernet parts (one DARTS cell)."""
    steps = _smoke(tmp_path, "darts-ours darts-nni ofa-ofa spos-nni")
    assert steps["darts-ours"]["step_s"] > 0 and steps["darts-ours"]["device"].startswith("cpu")
    assert steps["sizes"]["darts"]["cells"] == 1
    _peers_ok(steps, ["darts-nni", "ofa-ofa", "spos-nni"])


@pytest.mark.slow
def test_gpu_script_smoke_every_part(tmp_path):
    steps = _smoke(tmp_path, None)
    for part in ("darts-ours", "ofa-ours", "spos-ours"):
        assert steps[part]["step_s"] > 0, steps[part]
    assert steps["ofa-ours"]["traces"] == 1  # one compile serves every subnet
    _peers_ok(steps, ["darts-nni", "ofa-ofa", "spos-nni"])
