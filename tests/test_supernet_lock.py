"""Workers of one search share the trained supernet file: one trains it, the others load it
whole (a lock around load-or-train, an atomic rename on save)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from nas.errors import StorageError
from nas.files import exclusive, write_atomically

OPTIONS = {"steps": 3, "batch_size": 16, "progress": False, "checkpoint_every": 0}


def _worker(run_dir: str, barrier, out) -> None:
    """A search worker: builds the evaluator, waits for the other, asks for the supernet."""
    import hashlib

    import numpy as np
    from nas.search_spaces import get_space

    from nas.evaluators.oneshot import SupernetEvaluator
    from nas.weights import flat_state

    ev = SupernetEvaluator(get_space("nbmacro"), "digits", run_dir=run_dir, options=OPTIONS)
    trained = []
    train = ev._train
    ev._train = lambda sn, path: (trained.append(1), train(sn, path))[1]
    barrier.wait(timeout=300)
    sn = ev.supernet()
    digest = hashlib.sha256()
    for k, v in sorted(flat_state(sn.model).items()):
        digest.update(k.encode() + np.ascontiguousarray(v).tobytes())
    out.put((bool(trained), digest.hexdigest()))


@pytest.mark.slow
def test_two_workers_train_the_supernet_once(tmp_path):
    """Slow: two spawned processes each import JAX and compile. Both find no supernet file
    at once: exactly one trains, the other waits and loads the same weights."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), barrier, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(t for t, _ in results) == [False, True]  # one trained, one loaded
    assert results[0][1] == results[1][1]  # the same weights
    files = sorted(p.name for p in (tmp_path / "supernet").iterdir())
    stem = files[0].rsplit(".", 1)[0]
    assert files == [f"{stem}.json", f"{stem}.lock", f"{stem}.safetensors"]  # no temporary


def test_atomic_write_leaves_the_whole_file_or_none(tmp_path):
    target = tmp_path / "sub" / "w.bin"
    write_atomically(target, lambda p: p.write_bytes(b"x" * 1000))
    assert target.read_bytes() == b"x" * 1000

    def broken(p):
        p.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, broken)
    assert target.read_bytes() == b"x" * 1000  # the old file stands
    assert sorted(f.name for f in target.parent.iterdir()) == ["w.bin"]  # no temporary left


def test_lock_is_exclusive_and_released(tmp_path):
    import fcntl

    lock = tmp_path / "a.lock"
    with exclusive(lock):
        with open(lock) as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(StorageError, match="cannot create the lock file"):
        with exclusive(tmp_path / "file" / "x.lock"):
            pass
