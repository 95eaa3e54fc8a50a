"""The command line: forms, JSON keys, errors, storage, resume after kill -9, export."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_data, run_cli

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"


def test_help_is_fast_and_lazy():
    code = "import sys, nas.cli; nas.cli.build_parser(); print(sorted(m for m in ('jax', 'ray', 'optuna', 'flax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_spaces_lists_every_space_with_its_size():
    out = run_cli("spaces", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["nb201"]["size"] == 15625
    assert {"nb201", "darts", "nasnet", "spos", "nbmacro", "ofa", "nb101"} <= set(rows)
    text = run_cli("spaces")
    assert "15,625" in text.stdout


def test_inspect_json_keys():
    out = run_cli(
        "inspect", "--space", "nb201", "--arch", "all_conv3x3", "--dataset", "cifar10", "--json"
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["params"] == 1_531_546 and info["flops"] == 220_119_690
    assert len(info["hash"]) == 32 and info["nodes"] > 300


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [
                "inspect",
                "--space",
                "nb201",
                "--arch",
                "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            ],
            "unknown op 'nor_conv_9x9'",
        ),
        (["inspect", "--space", "nb999", "--arch", "x"], "unknown search space 'nb999'"),
        (["inspect", "--space", "nb201", "--arch", "missing.json"], "does not exist"),
        (
            ["inspect", "--space", "nb201", "--arch", "all_conv3x3", "--dataset", "mnist"],
            "no network for dataset 'mnist'",
        ),
        (
            [
                "search",
                "--space",
                "nb201",
                "--strategy",
                "sa",
                "--evaluator",
                "benchmark",
                "--budget",
                "3",
            ],
            "unknown strategy 'sa'",
        ),
        (
            [
                "search",
                "--space",
                "nb201",
                "--strategy",
                "random",
                "--evaluator",
                "benchmark",
                "--budget",
                "0",
            ],
            "--budget must be between 1 and 10,000,000, got 0",
        ),
        (
            [
                "search",
                "--space",
                "darts",
                "--strategy",
                "random",
                "--evaluator",
                "benchmark",
                "--budget",
                "3",
            ],
            "has no benchmark table",
        ),
        (
            [
                "export",
                "--storage",
                "sqlite:////nonexistent/dir/x.db",
                "--study",
                "s",
                "--out",
                "/tmp/x",
            ],
            "cannot open storage",
        ),
        (["inspect", "--space", "nb201"], "required: --arch"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def search(tmp_path: Path, *extra: str, budget: int = 20, strategy: str = "evolution"):
    return run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        strategy,
        "--evaluator",
        "benchmark",
        "--budget",
        str(budget),
        "--seed",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--json",
        *extra,
    )


@pytest.mark.parametrize("strategy", ["random", "evolution", "tpe"])
def test_search_on_the_table_records_every_trial(tmp_path, strategy):
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    out = search(tmp_path, strategy=strategy)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert {"best_arch", "best_metrics", "n_trials", "study", "storage"} <= set(res)
    assert res["n_trials"] == 20 and res["study"] == "run"
    assert 85 < res["best_metrics"]["accuracy"] <= 94.38
    db = tmp_path / "run" / "study.db"
    rows = (
        sqlite3.connect(db).execute("select count(*) from trials where state='COMPLETE'").fetchone()
    )
    assert rows[0] == 20
    # Running again without --resume must not touch the stored study.
    again = search(tmp_path, strategy=strategy)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert sqlite3.connect(db).execute("select count(*) from trials").fetchone()[0] == 20
    # --resume with a larger budget continues the same study.
    more = search(tmp_path, "--resume", budget=25, strategy=strategy)
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["n_trials"] == 25


def test_any_sqlalchemy_url_and_study_name(tmp_path):
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    url = f"sqlite:///{tmp_path}/elsewhere.db"
    out = search(tmp_path, "--storage", url, "--study", "mine", budget=5)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["storage"] == url and res["study"] == "mine"
    assert (tmp_path / "elsewhere.db").exists()


def test_train_search_export_and_load_back(tmp_path):
    out = run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        "random",
        "--evaluator",
        "train",
        "--budget",
        "2",
        "--steps",
        "40",
        "--out",
        str(tmp_path / "run"),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["best_metrics"]["accuracy"] > 40 and res["n_trials"] == 2
    storage = res["storage"]
    exp = run_cli(
        "export",
        "--storage",
        storage,
        "--study",
        "run",
        "--trial",
        "best",
        "--format",
        "flax",
        "--out",
        str(tmp_path / "exp"),
    )
    assert exp.returncode == 0, exp.stderr
    doc = json.loads((tmp_path / "exp" / "arch.json").read_text())
    assert doc["genotype"]["arch"] == res["best_arch"] and doc["weights"]["trained"] is True
    assert doc["provenance"]["dataset"] == "digits"
    # The exported file inspects back to the same params, FLOPs and hash.
    ins = run_cli("inspect", "--arch", str(tmp_path / "exp" / "arch.json"), "--json")
    assert ins.returncode == 0, ins.stderr
    info = json.loads(ins.stdout)
    assert (info["params"], info["flops"], info["hash"]) == (
        doc["cost"]["params"],
        doc["cost"]["flops"],
        doc["hash"],
    )
    # One call rebuilds the trained model; it reproduces the stored accuracy.
    code = (
        "import json,sys; import numpy as np; from nas.weights import load_model; from nas.data import load_digits;"
        f"m=load_model({str(tmp_path / 'exp')!r}); m.eval(); d=load_digits(0);"
        "print(100*float(np.mean(np.argmax(np.asarray(m(d.x_val)),-1)==d.y_val)))"
    )
    acc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert acc.returncode == 0, acc.stderr
    assert float(acc.stdout.strip()) == pytest.approx(res["best_metrics"]["accuracy"], abs=1e-6)
    js = run_cli(
        "export",
        "--storage",
        storage,
        "--study",
        "run",
        "--trial",
        "0",
        "--format",
        "json",
        "--out",
        str(tmp_path / "exp0"),
    )
    assert js.returncode == 0 and not (tmp_path / "exp0" / "weights.safetensors").exists()


def test_kill_9_and_resume_loses_no_finished_trial(tmp_path):
    """A driver killed with SIGKILL mid-search resumes: finished trials stay, the rest run."""
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "nas.cli",
        "search",
        "--space",
        "nb201",
        "--strategy",
        "evolution",
        "--evaluator",
        "train",
        "--budget",
        "5",
        "--steps",
        "15",
        "--out",
        str(run),
        "--no-progress",
        "--json",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = run / "study.db"

    def complete() -> list[tuple]:
        if not db.exists():
            return []
        try:
            con = sqlite3.connect(db)
            return con.execute(
                "select number, value from trials join trial_values using(trial_id) where state='COMPLETE'"
            ).fetchall()
        except sqlite3.OperationalError:
            return []

    deadline = time.time() + 300
    while len(complete()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = complete()
    assert len(before) >= 2, "the search should have finished two trials before the kill"
    states = sqlite3.connect(db).execute("select state from trials").fetchall()
    resumed = subprocess.run(
        cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    res = json.loads(resumed.stdout)
    after = complete()
    assert set(before) <= set(after), "every finished trial survives"
    assert res["n_trials"] == 5 and len(after) == 5
    if ("RUNNING",) in states:  # the interrupted trial is marked, and its architecture re-run
        con = sqlite3.connect(db)
        marked = con.execute(
            "select count(*) from trial_user_attributes where key='interrupted'"
        ).fetchone()[0]
        assert marked >= 1


def test_hard_constraints_filter_proposals_and_impossible_ones_fail_cleanly(tmp_path):
    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    out = search(tmp_path, "--max-flops", "50M", budget=15)
    assert out.returncode == 0, out.stderr
    con = sqlite3.connect(tmp_path / "run" / "study.db")
    costs = [
        json.loads(v)
        for (v,) in con.execute("select value_json from trial_user_attributes where key='cost'")
    ]
    assert len(costs) == 15 and all(c["flops"] <= 50e6 for c in costs)
    bad = run_cli(
        "search",
        "--space",
        "nb201",
        "--strategy",
        "random",
        "--evaluator",
        "benchmark",
        "--budget",
        "3",
        "--max-flops",
        "1M",
        "--out",
        str(tmp_path / "bad"),
        "--no-progress",
    )
    assert bad.returncode == 2 and "impossible limit --max-flops 1,000,000" in bad.stderr
    assert "smallest architecture of 'nb201' has flops 7,783,050" in bad.stderr
    assert not (tmp_path / "bad" / "study.db").exists()  # refused before anything is stored
