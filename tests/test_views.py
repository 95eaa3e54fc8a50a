"""What a user sees: diagrams, the HTML run report (read in a real headless browser), dashboard."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, require_data, run_cli

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.mark.parametrize("suffix, view", [("png", "cell"), ("svg", "network"), ("png", "ops")])
def test_draw_writes_a_diagram(tmp_path, suffix, view):
    out = tmp_path / f"d.{suffix}"
    res = run_cli(
        "draw",
        "--space",
        "nb201",
        "--arch",
        CELL,
        "--dataset",
        "digits",
        "--view",
        view,
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in data[:2000]
    assert len(data) > 2000


def test_draw_errors(tmp_path):
    res = run_cli("draw", "--space", "nb201", "--arch", CELL, "--out", str(tmp_path / "x.gif"))
    assert res.returncode == 2 and "must end in .png or .svg" in res.stderr


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_search_writes_a_report_a_browser_can_read(tmp_path):
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    res = run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        "evolution",
        "--evaluator",
        "benchmark",
        "--budget",
        "12",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--json",
    )
    assert res.returncode == 0, res.stderr
    report = tmp_path / "run" / "report.html"
    text = report.read_text()
    assert "src='data:image/png;base64," in text and "src='http" not in text
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed under CI (.ci/run installs it)")
        pytest.skip("chromium not installed")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    best = json.loads(res.stdout)["best_arch"]
    for needle in (
        "Search report",
        "Trajectory",
        "Best architectures",
        "Failures",
        "completed trials",
        best,
    ):
        assert needle in html, needle
    assert html.count("<img") >= 2  # trajectory + at least one diagram


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_on_localhost(tmp_path):
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    res = run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        "random",
        "--evaluator",
        "benchmark",
        "--budget",
        "3",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    port = _free_port()
    url = f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas.cli", "dashboard", "--storage", url, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        body = None
        for _ in range(150):
            try:
                body = urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/studies", timeout=2
                ).read()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None, "dashboard did not answer"
        studies = json.loads(body)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["run"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    missing = run_cli("dashboard", "--storage", f"sqlite:///{tmp_path / 'nope.db'}")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
