"""A real PostgreSQL server as the study storage: search, resume, and two drivers sharing a study.

The module starts its own server (``initdb`` + ``pg_ctl`` in a temporary folder, a free port,
trust authentication, as the ``postgres`` user when run as root). Without PostgreSQL or
psycopg2 the tests skip, except under CI (``CI=true``), where they fail: ``.ci/run``
installs the server.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nas.errors import StorageError
from tests.conftest import ROOT


def _unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL tests cannot run under CI: {why}")
    pytest.skip(why)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        _unavailable("psycopg2 is not installed (pip install 'nasjax[dev]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        _unavailable("PostgreSQL is not installed (apt-get install -y postgresql)")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="nas-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run the server")
        if not runuser:
            _unavailable("running as root and runuser is missing")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    port = _free_port()
    data, log = root / "data", root / "server.log"
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [
                *prefix,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(log),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", b"") or b""
        if log.exists():
            detail += log.read_bytes()[-500:]
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(
            f"the PostgreSQL server did not start: {detail.decode(errors='replace')[-500:]}"
        )
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE nas")
        con.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nas"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg2

    dsn = url.replace("postgresql+psycopg2://", "postgresql://")
    con = psycopg2.connect(dsn)
    try:
        cur = con.cursor()
        cur.execute(sql)
        return cur.fetchall()
    finally:
        con.close()


def _search(tmp_path: Path, url: str, study: str, *extra: str, budget: int = 6, seed: int = 0):
    return [
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
        "--budget",
        str(budget),
        "--seed",
        str(seed),
        "--storage",
        url,
        "--study",
        study,
        "--out",
        str(tmp_path / f"{study}-{seed}"),
        "--no-progress",
        "--json",
        *extra,
    ]


def test_search_resume_and_export_on_postgresql(pg_url, tmp_path):
    from nas import api
    from nas.export import export_trial

    def search(budget, resume):
        return api.search(
            "nb201", "evolution", "synthetic", budget, seed=0, out=tmp_path / "solo",
            storage=pg_url, study="solo", resume=resume, progress=False,
        )  # fmt: skip

    assert search(5, False).n_trials == 5
    with pytest.raises(StorageError, match="already exists"):
        search(5, False)
    res = search(8, True)
    assert res.n_trials == 8 and res.storage == pg_url
    rows = _query(
        pg_url,
        "select count(*) from trials t join studies s using(study_id) "
        "where s.study_name='solo' and t.state='COMPLETE'",
    )
    assert rows[0][0] == 8
    doc = export_trial(pg_url, "solo", "best", "json", tmp_path / "exp")
    assert doc["genotype"]["arch"] == res.best_arch


def test_a_storage_password_is_never_written_anywhere(pg_url, tmp_path):
    """The password of a --storage URL reaches no file a run or an export writes, no output,
    and nothing stored in the database (the study's settings and command line included)."""
    secret = "S3cretPassw0rd"
    url = pg_url.replace("postgres@", f"postgres:{secret}@")
    run = tmp_path / "pw"
    out = subprocess.run(
        [*_search(tmp_path, url, "pw", budget=3), "--out", str(run)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    exported = subprocess.run(
        [sys.executable, "-m", "nas.cli", "export", "--storage", url, "--study", "pw",
         "--trial", "best", "--format", "json", "--out", str(tmp_path / "exp"), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    leaks = [secret in t for t in (out.stdout, out.stderr, exported.stdout, exported.stderr)]
    assert not any(leaks), leaks
    files = [p for p in (*run.rglob("*"), *(tmp_path / "exp").rglob("*")) if p.is_file()]
    assert {"result.json", "report.html", "arch.json"} <= {p.name for p in files}
    assert [p for p in files if secret.encode() in p.read_bytes()] == []
    assert "postgres:***@" in (run / "result.json").read_text()
    stored = _query(
        pg_url,
        "select value_json from study_user_attributes union all "
        "select value_json from study_system_attributes union all "
        "select value_json from trial_user_attributes union all "
        "select value_json from trial_system_attributes",
    )
    assert stored and not [v for (v,) in stored if secret in v]
    # Resuming with the password (as a user would) works and still writes none.
    again = subprocess.run(
        [*_search(tmp_path, url, "pw", budget=4), "--out", str(run), "--resume"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [p for p in run.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []


def test_two_drivers_share_one_study_and_lose_no_trial(pg_url, tmp_path):
    budget = 24
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    procs = [
        subprocess.Popen(
            _search(tmp_path, pg_url, "shared", "--join", "--steps", "5", budget=budget, seed=s),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for s in (1, 2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        # A driver ends once its own trials are done and the study's budget is covered;
        # the other driver may still be finishing its last one.
        assert json.loads(out)["n_trials"] >= budget - 1
    rows = _query(
        pg_url,
        "select t.number, t.state, a.value_json from trials t join studies s using(study_id) "
        "left join trial_user_attributes a on a.trial_id=t.trial_id and a.key='driver' "
        "where s.study_name='shared' order by t.number",
    )
    numbers = [n for n, _, _ in rows]
    assert numbers == list(range(len(rows))), "trial numbers are unique and contiguous"
    assert all(state == "COMPLETE" for _, state, _ in rows), "no trial lost or left running"
    # Each driver stops when the study holds the budget; racing drivers may add one more each.
    assert budget <= len(rows) <= budget + 2
    drivers = {json.loads(d) for _, _, d in rows}
    assert len(drivers) == 2, "both drivers added trials"
    # Every trial carries a result.
    results = _query(
        pg_url,
        "select count(*) from trial_user_attributes a join trials t using(trial_id) "
        "join studies s using(study_id) where s.study_name='shared' and a.key='metrics'",
    )
    assert results[0][0] == len(rows)
    # A driver with other settings cannot join.
    from nas import api

    with pytest.raises(StorageError, match="cannot join study 'shared'"):
        api.search(
            "nb201", "random", "synthetic", 4, seed=3, out=tmp_path / "other",
            storage=pg_url, study="shared", join=True, progress=False,
        )  # fmt: skip
