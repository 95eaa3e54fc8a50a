"""Ray execution: pinned actors, asynchronous search, worker deaths retried, driver kill -9.

The in-process checks share one Ray instance inside one test (so that pytest-xdist cannot
split them over two processes, each starting Ray); the kill -9 test drives the CLI in
subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

from nas.search_spaces import get_space  # noqa: E402

from nas.config import SearchConfig  # noqa: E402
from nas.errors import ConfigError  # noqa: E402
from nas.evaluators.synthetic import SyntheticEvaluator, synthetic_accuracy  # noqa: E402
from nas.execution import Job, RayExecutor  # noqa: E402
from nas.objectives import parse_objectives  # noqa: E402
from nas.search import run_search  # noqa: E402
from nas.searchers.base import Searcher  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

SPACE = get_space("nb201")
ARCHS = [g.to_str() for g in (SPACE.sample(np.random.default_rng(i)) for i in range(12))]
FAIL, NAN, CRASH, KILLED = ARCHS[0], ARCHS[1], ARCHS[2], ARCHS[3]


class Scripted(Searcher):
    """Proposes a fixed list of architectures; records what it was told."""

    name = "scripted"

    def __init__(self, archs):
        super().__init__(SPACE, parse_objectives("accuracy"), 0)
        self.archs = list(archs)
        self.told = {}

    def ask(self):
        return SPACE.parse(self.archs.pop(0))

    def tell(self, genotype, values):
        super().tell(genotype, values)
        self.told[genotype.to_str()] = values


def test_ray_executor_pins_retries_dead_workers_and_runs_an_async_search(tmp_path):
    """One Ray instance (started here, stopped at the end) for three checks in a row."""
    evaluator = SyntheticEvaluator(
        SPACE,
        options=dict(steps=30, step_seconds=0.02, fail=[FAIL], nan=[NAN], crash=[CRASH]),
    )
    ex = RayExecutor(evaluator, workers=2, max_retries=1)
    try:
        assert ex.startup_seconds > 0 and ex.capacity == 2
        check_actors_are_pinned_to_distinct_cores(ex)
        check_worker_killed_mid_evaluation_is_retried_and_faults_fail(ex, tmp_path / "a")
        check_asynchronous_search_records_faults_and_keeps_going(ex, tmp_path / "b")
    finally:
        ex.close()


def check_actors_are_pinned_to_distinct_cores(executor):
    info = executor.worker_info()
    assert len({i["pid"] for i in info}) == 2 and os.getpid() not in {i["pid"] for i in info}
    cores = [i["core"] for i in info]
    if len(os.sched_getaffinity(0)) >= 2 and None not in cores:
        assert len(set(cores)) == 2  # each claimed its own core


def check_worker_killed_mid_evaluation_is_retried_and_faults_fail(executor, tmp_path):
    got = {}

    def collect(timeout=60):
        for c in executor.wait(timeout=timeout):
            got[c.job.genotype.to_str()] = c

    # The victim runs alone first, so the worker evaluating it is known.
    executor.submit(Job(SPACE.parse(KILLED), tmp_path / "killed"))
    pidfile = tmp_path / "killed" / "worker.pid"
    deadline = time.time() + 60
    while not pidfile.exists() and time.time() < deadline:
        time.sleep(0.02)
    victim = int(pidfile.read_text())
    assert victim in executor.worker_pids()
    os.kill(victim, signal.SIGKILL)  # mid-evaluation (each takes 0.6 s)
    for i, a in enumerate((FAIL, NAN, CRASH)):
        while executor.running >= executor.capacity:
            collect()
        executor.submit(Job(SPACE.parse(a), tmp_path / str(i)))
    while executor.running:
        collect()
    assert set(got) == {KILLED, FAIL, NAN, CRASH}
    k = got[KILLED]
    assert k.result.ok and k.retries == 1 and k.worker["pid"] != victim
    assert k.result.accuracy == pytest.approx(synthetic_accuracy(KILLED))
    assert not got[FAIL].result.ok and "injected failure" in got[FAIL].result.error
    assert not got[NAN].result.ok and "non-finite" in got[NAN].result.error
    c = got[CRASH]  # kills its worker every time: retried once (max_retries=1), then failed
    assert not c.result.ok and c.retries == 2 and "worker died 2 time(s)" in c.result.error
    assert victim not in executor.worker_pids()  # replaced by a fresh actor
    for i in range(3):  # every failed trial says why in its folder (NaN, worker deaths too)
        assert (tmp_path / str(i) / "error.txt").read_text().strip()


def check_asynchronous_search_records_faults_and_keeps_going(executor, tmp_path):
    archs = [FAIL, NAN, CRASH] + ARCHS[4:12]
    tmp_path.mkdir(parents=True, exist_ok=True)  # an --out outside the working folder must exist
    searcher = Scripted(archs)
    config = SearchConfig.build(
        dict(space="nb201", strategy="random", evaluator="synthetic", budget=len(archs),
             out=tmp_path / "run", progress=False)
    )  # fmt: skip
    res = run_search(
        config,
        strategy=searcher,
        executor=executor,
        evaluator=SyntheticEvaluator(SPACE),  # recorded in the settings; the actors have theirs
    )
    assert res.n_trials == 11 and res.n_failed == 3
    assert set(searcher.told) == set(archs)
    con = sqlite3.connect(tmp_path / "run" / "study.db")
    rows = con.execute(
        "select t.number, t.state, t.datetime_start, t.datetime_complete, a.value_json "
        "from trials t join trial_user_attributes a using(trial_id) where a.key='worker'"
    ).fetchall()
    assert len({json.loads(w)["pid"] for *_, w in rows}) >= 2  # both workers evaluated
    # Evaluations overlapped: some trial started before the previous one completed.
    spans = sorted((s, e) for _, st, s, e, _ in rows if st == "COMPLETE")
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
    errors = dict(
        con.execute(
            "select t.number, a.value_json from trials t join trial_user_attributes a "
            "using(trial_id) where a.key='error' and t.state='FAIL'"
        ).fetchall()
    )
    assert len(errors) == 3
    retries = con.execute(
        "select value_json from trial_user_attributes where key='retries'"
    ).fetchall()
    assert [json.loads(r) for (r,) in retries] == [2]


def test_bad_worker_count_is_a_config_error():
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        RayExecutor(SyntheticEvaluator(SPACE), workers=0)


def _complete(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(db)
        return con.execute(
            "select t.number, a.value_json from trials t join trial_user_attributes a "
            "using(trial_id) where t.state='COMPLETE' and a.key='arch'"
        ).fetchall()
    except sqlite3.OperationalError:
        return []


def test_driver_kill_9_with_two_workers_resumes_without_losing_trials(tmp_path):
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
        "synthetic",
        "--steps",
        "60",  # 0.6 s per evaluation
        "--budget",
        "6",
        "--workers",
        "2",
        "--out",
        str(run),
        "--no-progress",
        "--json",
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    db = run / "study.db"
    try:
        deadline = time.time() + 240
        while len(_complete(db)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only; its Ray processes are orphaned
        proc.wait()
    finally:
        # Clean up what the killed driver left behind (same process group, started here).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = _complete(db)
    con = sqlite3.connect(db)
    existing = {n for (n,) in con.execute("select number from trials")}
    running = [
        a
        for (a,) in con.execute(
            "select a.value_json from trials t join trial_user_attributes a using(trial_id) "
            "where t.state='RUNNING' and a.key='arch'"
        )
    ]
    assert 2 <= len(before) < 6, proc.stderr.read().decode()[-2000:]
    resumed = subprocess.run(
        cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    res = json.loads(resumed.stdout)
    after = _complete(db)
    assert set(before) <= set(after), "every finished trial survives"
    assert res["n_trials"] == 6 and len(after) == 6
    # Every trial in flight at the kill is marked interrupted and its architecture re-run.
    marked = con.execute(
        "select count(*) from trial_user_attributes where key='interrupted'"
    ).fetchone()[0]
    assert len(running) <= marked <= 2
    assert {a for a in running} <= {a for _, a in after}
    # The searcher was rebuilt by replaying the stored asks and tells: the resumed driver's
    # events continue the sequence (a fresh searcher would number them from 0 again).
    seqs = {}
    for number, _key, value in con.execute(
        "select t.number, a.key, a.value_json from trials t join trial_user_attributes a "
        "using(trial_id) where a.key in ('ask_seq', 'tell_seq')"
    ):
        seqs.setdefault(number, []).append(json.loads(value))
    old = [v for n, vs in seqs.items() if n in existing for v in vs]
    new = [v for n, vs in seqs.items() if n not in existing for v in vs]
    assert old and new and min(new) > max(old)
