"""``nas data``: the reference-table manifest, verification, and fetching from a real HTTP
server on 127.0.0.1 that serves the data folder (or a damaged copy of part of it)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from nas import paths, refdata
from nas.errors import DataError, UnknownName
from tests.conftest import require_data, run_cli

LUT = "ofa/ofa_note10_latency_lut/160_lookup_table.yaml"


@pytest.fixture(scope="module")
def shared() -> Path:
    """The data folder beside the checkout (fails under CI when missing)."""
    return require_data("nasbench/nas-bench-macro_cifar10.json").parent.parent


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """``serve(folder)`` -> base URL of a real HTTP server on 127.0.0.1 serving ``folder``."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty ``$NAS_DATA_DIR``."""
    d = tmp_path / "data-home"
    monkeypatch.setenv(paths.DATA_ENV, str(d))
    return d


def test_manifest_matches_the_data_folder(shared):
    """Every registered file is in the data folder with its size and SHA-256, and every file
    of the data folder is registered."""
    rows = refdata.verify(root=shared)
    assert {r["table"] for r in rows} == set(refdata.tables())
    assert all(r["ok"] == r["files"] and not r["missing"] and not r["bad"] for r in rows), rows
    registered = {f.path for t in refdata.tables().values() for f in t.files}
    on_disk = {
        str(p.relative_to(shared))
        for p in shared.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    assert registered == on_disk
    for t in refdata.tables().values():
        assert t.licence and t.source
        assert all(f.url.startswith("https://") and len(f.sha256) == 64 for f in t.files)


def test_fetch_from_a_mirror_then_the_spaces_read_it(shared, serve, home):
    base = serve(shared)
    out = refdata.fetch(["nbmacro", "ofa-note10-lut"], mirror=base, progress=False)
    assert len(out["fetched"]) == 6 and not out["present"] and out["folder"] == str(home)
    assert refdata.verify(["nbmacro", "ofa-note10-lut"], root=home)[0]["ok"] == 1
    assert paths.data_path("nasbench/nas-bench-macro_cifar10.json").parent.parent == home
    from nas.search_spaces.ofa.latency import load_table

    assert str(home) in load_table("note10").name  # the space reads the fetched folder
    again = refdata.fetch(["nbmacro"], mirror=base, progress=False)
    assert again["fetched"] == [] and len(again["present"]) == 1
    assert not list(home.rglob(".*.part-*"))


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[:-100], "truncated"),
        (lambda b: b + b"x" * 100, "too long"),
        (lambda b: b[:50] + bytes([b[50] ^ 1]) + b[51:], "SHA-256"),
    ],
    ids=["truncated", "oversized", "corrupted"],
)
def test_a_damaged_download_is_refused_and_not_left(shared, serve, home, tmp_path, damage, words):
    bad = tmp_path / "mirror"
    (bad / LUT).parent.mkdir(parents=True)
    for f in refdata.tables()["ofa-note10-lut"].files:
        shutil.copy(shared / f.path, bad / f.path)
    (bad / LUT).write_bytes(damage((shared / LUT).read_bytes()))
    with pytest.raises(DataError, match=f"1 of 5 files not fetched.*{words}.*refused"):
        refdata.fetch(["ofa-note10-lut"], mirror=serve(bad), progress=False)
    assert not (home / LUT).exists()
    assert not list(home.rglob(".*.part-*"))
    assert len(list((home / LUT).parent.glob("*.yaml"))) == 4  # the good ones are kept


def test_a_bad_file_in_place_is_reported_and_fetched_again(shared, serve, home):
    (home / LUT).parent.mkdir(parents=True)
    (home / LUT).write_bytes(b"not a table")
    row = refdata.verify(["ofa-note10-lut"])[0]
    assert row["bad"] == [{"path": LUT, "folder": str(home), "problem": "wrong size"}]
    assert len(row["missing"]) == 4
    refdata.fetch(["ofa-note10-lut"], mirror=serve(shared), progress=False)
    assert refdata.check_file(refdata.tables()["ofa-note10-lut"].files[0], home) == "ok"


def test_unreachable_and_unknown(home, serve, tmp_path):
    with pytest.raises(DataError, match="cannot download .*404"):
        refdata.fetch(["nbmacro"], mirror=serve(tmp_path), progress=False)
    with pytest.raises(UnknownName, match="unknown reference table 'nb999'.*nbmacro"):
        refdata.select(["nb999"])


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    roots = paths.data_roots()
    assert roots[-1] == tmp_path / "cache" / "nas" / "data" == paths.data_home()
    assert roots[:-1] == ([paths.checkout_data_dir()] if paths.checkout_data_dir() else [])
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "mine"))
    assert paths.data_roots() == [tmp_path / "mine"] == [paths.data_home()]
    assert paths.data_path("nasbench/x.json") == tmp_path / "mine" / "nasbench" / "x.json"


def test_cli_fetch_verify_list(shared, serve, tmp_path):
    env = {paths.DATA_ENV: str(tmp_path / "d")}
    base = serve(shared)
    done = run_cli("data", "verify", "nbmacro", env=env)
    assert done.returncode == 1 and "missing: 1 files" in done.stdout
    done = run_cli("data", "fetch", "nbmacro", "--mirror", base, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["fetched"] == ["nasbench/nas-bench-macro_cifar10.json"]
    done = run_cli("data", "list", "--json", env=env)
    rows = {r["table"]: r for r in json.loads(done.stdout)}
    assert rows["nbmacro"]["present"] == 1 and rows["ofa-specialized"]["present"] == 0
    assert rows["ofa-specialized"]["files"] == 100 and "MIT" in rows["ofa-specialized"]["licence"]
    done = run_cli("data", "fetch", "nb999", env=env)
    assert done.returncode == 2 and done.stderr.startswith("nas: error: unknown reference table")
