"""The trial store: the one module that touches Optuna's storage.

Optuna's RDB storage (SQLite by default, any SQLAlchemy URL such as PostgreSQL) is the
system of record of every search. :class:`TrialStore` is the platform's only door to it:
opening and creating studies, writing a trial when it is proposed and when it finishes,
the run configuration, the searcher's snapshots, the lease of the driver that owns the study,
and reading everything back as :class:`TrialRecord` s. No other module uses Optuna's storage
API or any private attribute of it.

What a trial holds (user attributes): ``arch`` and ``space`` when it is proposed, with
``ask_seq`` when the searcher proposed it (not for a re-run of an interrupted trial); when it
finishes ``status``, ``metrics``, ``cost``, ``duration``, ``error``, ``artifacts``, ``told``
(the oriented objective values the searcher was told, ``None`` for a failure) and
``tell_seq``. The sequence numbers order every ask and tell of the study's searcher, so that
a resumed driver rebuilds the searcher by loading its last snapshot and replaying the events
after it: the bytes written per trial stay flat instead of growing with the history.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nas.errors import StorageError

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
"""A driver's lease lasts this long past its last heartbeat (one every third of it)."""

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)([^@\s]*)@")


def mask_url(text: str | None) -> str | None:
    """``text`` with the password of every URL in it replaced by ``***``.

    Example:
        >>> mask_url("postgresql+psycopg2://ann:s3cret@db:5432/nas")
        'postgresql+psycopg2://ann:***@db:5432/nas'
    """
    return None if text is None else _URL_PASSWORD.sub(r"\1***@", text)


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').as_posix()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other storages)."""
    return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else None


def _sqlite_fast_commits(storage: Any) -> None:
    """WAL journal, ``synchronous=NORMAL``: a commit survives a killed process (kill -9)
    without an fsync each; only a power cut can lose the last commits. Commits otherwise
    cost ~20 ms each on a busy disk and dominate a fast evaluation."""
    from sqlalchemy import event

    def pragmas(dbapi_connection, _record) -> None:
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    event.listen(storage.engine, "connect", pragmas)
    storage.engine.dispose()  # pooled connections reopen with the pragmas


def open_storage(url: str, create: bool) -> Any:
    """Optuna's RDB storage at ``url``; a URL that cannot be opened is a StorageError."""
    import optuna

    path = sqlite_path(url)
    if path is not None and not create and not path.exists():
        raise StorageError(f"cannot open storage {mask_url(url)}: {path} does not exist")
    for attempt in range(3):
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
            break
        except Exception as e:  # SQLAlchemy raises many kinds; all mean "cannot open"
            # Drivers starting together on a fresh database (or a reader such as the dashboard
            # opening one while its driver creates it) race to create the tables; the loser's
            # error goes away on a second try.
            racing = any(
                sign in str(e)
                for sign in ("already exists", "database is locked", "UNIQUE constraint failed")
            )
            if attempt == 2 or not racing:
                first = mask_url(str(e).splitlines()[0] if str(e) else type(e).__name__)
                raise StorageError(f"cannot open storage {mask_url(url)}: {first}") from None
            time.sleep(0.5 + attempt)
    if path is not None:
        _sqlite_fast_commits(storage)
    return storage


@dataclass
class TrialRecord:
    """One stored trial as the platform sees it."""

    number: int
    state: str
    arch: str
    space: str
    metrics: dict[str, float]
    cost: dict[str, float]
    duration: float
    error: str
    artifacts: dict[str, str]
    interrupted: bool = False
    ask_seq: int | None = None
    tell_seq: int | None = None
    told: list[float] | None = None
    started: datetime | None = None
    completed: datetime | None = None
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def accuracy(self) -> float:
        return float(self.metrics.get("accuracy", float("nan")))

    @property
    def finished(self) -> bool:
        """Finished for good: completed or failed, and not interrupted (re-run instead)."""
        return self.state in ("COMPLETE", "FAIL") and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "state": self.state,
            "arch": self.arch,
            "space": self.space,
            "metrics": self.metrics,
            "cost": self.cost,
            "duration": self.duration,
            "error": self.error,
            "artifacts": self.artifacts,
            "interrupted": self.interrupted,
        }


def _record(t: Any) -> TrialRecord:
    ua = t.user_attrs
    told = ua.get("told")
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        arch=ua.get("arch", ""),
        space=ua.get("space", ""),
        metrics=ua.get("metrics", {}),
        cost=ua.get("cost", {}),
        duration=float(ua.get("duration", 0.0)),
        error=ua.get("error", ""),
        artifacts=ua.get("artifacts", {}),
        interrupted=bool(ua.get("interrupted", False)),
        ask_seq=ua.get("ask_seq"),
        tell_seq=ua.get("tell_seq"),
        told=None if told is None else [float(x) for x in told],
        started=t.datetime_start,
        completed=t.datetime_complete,
        attrs=dict(ua),
    )


@dataclass
class Pending:
    """A trial written as proposed and not finished yet (the store's handle on it)."""

    number: int
    arch: str
    space: str
    _trial: Any = field(repr=False, default=None)  # the storage's trial id


class TrialStore:
    """One study in one storage, as the platform uses it. Build with :meth:`open`."""

    def __init__(self, study: Any, url: str) -> None:
        self._study = study
        self.url = url
        self._lease_key: str | None = None
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        url: str,
        name: str,
        *,
        create: bool = False,
        resume: bool = False,
        directions: list[str] | None = None,
        join: bool = False,
    ) -> TrialStore:
        """Open (or create) the study ``name`` in ``url``.

        Creating a study that exists without ``resume`` (or ``join``) is refused, so nothing
        stored is overwritten or mixed by accident. ``join`` opens the study whether or not it
        exists yet (several drivers starting at once: the first creates it). ``directions``
        (one per objective, default ``["maximize"]``) must match an existing study's.
        """
        import optuna

        storage = open_storage(url, create)
        directions = list(directions or ["maximize"])
        try:
            exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
        except Exception as e:  # noqa: BLE001 - a damaged database raises many kinds
            raise StorageError(
                f"cannot read storage {mask_url(url)} (a damaged or foreign database?): "
                f"{_one_line(e)}"
            ) from None
        if exists and create and not (resume or join):
            raise StorageError(
                f"study {name!r} already exists in {mask_url(url)}; pass --resume to continue "
                "it or choose another --study / --out"
            )
        if not exists:
            if not create:
                raise StorageError(f"no study {name!r} in {mask_url(url)}")
            if resume and not join:
                raise StorageError(f"cannot resume: no study {name!r} in {mask_url(url)}")
            try:
                study = optuna.create_study(storage=storage, study_name=name, directions=directions)
                return cls(study, url)
            except optuna.exceptions.DuplicatedStudyError:
                if not join:
                    raise StorageError(f"study {name!r} was created by another driver") from None
        try:
            study = optuna.load_study(storage=storage, study_name=name)
        except Exception as e:  # noqa: BLE001
            raise StorageError(f"cannot read study {name!r}: {_one_line(e)}") from None
        store = cls(study, url)
        if create and store.directions != directions:
            raise StorageError(
                f"study {name!r} optimises {store.directions}, not {directions}; use the same "
                "--objectives or another --study"
            )
        return store

    @property
    def name(self) -> str:
        return self._study.study_name

    @property
    def directions(self) -> list[str]:
        return [d.name.lower() for d in self._study.directions]

    @property
    def display_url(self) -> str:
        """The storage URL with any password masked: the form every file and message shows."""
        return mask_url(self.url) or ""

    # ---------------------------------------------------------------- study attributes

    def attr(self, key: str, default: Any = None) -> Any:
        return self._study.user_attrs.get(key, default)

    def set_attr(self, key: str, value: Any) -> None:
        """A JSON value as a study attribute (normalised through JSON first)."""
        self._study.set_user_attr(key, json.loads(json.dumps(value)))

    def settings(self) -> dict[str, Any]:
        """The run's recorded settings (configuration, evaluator settings, provenance)."""
        return dict(self.attr("settings") or {})

    # ---------------------------------------------------------------- trials

    def records(self) -> list[TrialRecord]:
        try:
            return [_record(t) for t in self._study.get_trials(deepcopy=False)]
        except Exception as e:  # noqa: BLE001 - a damaged database raises many kinds
            raise StorageError(f"cannot read the trials of {self.name!r}: {_one_line(e)}") from None

    def record(self, number: int) -> TrialRecord:
        for r in self.records():
            if r.number == number:
                return r
        raise StorageError(f"study {self.name!r} has no trial {number}")

    def start(self, arch: str, space: str, **attrs: Any) -> Pending:
        """Write a proposed trial (state RUNNING) with its architecture, before evaluating it.

        One transaction: the trial is created from a template that carries its attributes
        (``Study.ask`` would first look for enqueued trials, reading every unfinished one,
        and then write each attribute after the trial)."""
        import datetime

        import optuna

        template = optuna.trial.FrozenTrial(
            number=0,
            state=optuna.trial.TrialState.RUNNING,
            value=None,
            datetime_start=datetime.datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={"arch": arch, "space": space, **attrs},
            system_attrs={},
            intermediate_values={},
            trial_id=0,
        )
        storage = self._study._storage
        trial_id = storage.create_new_trial(self._study._study_id, template_trial=template)
        return Pending(storage.get_trial_number_from_id(trial_id), arch, space, trial_id)

    def finish(self, pending: Pending, attrs: dict[str, Any], values: list[float] | None) -> None:
        """Write a trial's outcome: its attributes in one transaction, then its state
        (COMPLETE with its objective values; FAIL without, or with a value that is not finite)."""
        import optuna

        self._set_trial_attrs(pending._trial, attrs)
        ok = values is not None and all(math.isfinite(v) for v in values)
        state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.FAIL
        self._study._storage.set_trial_state_values(
            pending._trial, state, [float(v) for v in values] if ok else None
        )

    def interrupt_running(self) -> list[TrialRecord]:
        """Mark the trials left RUNNING by a dead driver as interrupted (failed); return them."""
        import optuna

        out = []
        storage = self._study._storage
        running = (optuna.trial.TrialState.RUNNING,)
        for t in self._study.get_trials(deepcopy=False, states=running):
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            out.append(_record(t))
        return out

    def _set_trial_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Several user attributes of a trial in one transaction (one commit, not one per key)."""
        import optuna

        backend = getattr(self._study._storage, "_backend", self._study._storage)
        if isinstance(backend, optuna.storages.RDBStorage):
            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session

            with _create_scoped_session(backend.scoped_session, True) as session:
                for key, value in attrs.items():
                    backend._set_trial_attr_without_commit(
                        session, models.TrialUserAttributeModel, trial_id, key, value
                    )
            return
        for key, value in attrs.items():
            self._study._storage.set_trial_user_attr(trial_id, key, value)

    # ---------------------------------------------------------------- searcher state

    def snapshot(self) -> tuple[dict[str, Any], int] | None:
        """The searcher's last saved state and the sequence number it includes."""
        snap = self.attr("searcher_snapshot")
        return None if snap is None else (snap["state"], int(snap["seq"]))

    def save_snapshot(self, state: dict[str, Any], seq: int) -> None:
        self.set_attr("searcher_snapshot", {"state": state, "seq": seq})

    # ---------------------------------------------------------------- lease

    def live_leases(self) -> list[dict[str, Any]]:
        """The leases of drivers that may still be running this study."""
        host = socket.gethostname()
        out = []
        for key, lease in self._study.user_attrs.items():
            if not key.startswith("lease:") or not isinstance(lease, dict):
                continue
            if lease.get("released"):
                continue
            if lease.get("host") == host:
                alive = pid_alive(int(lease.get("pid", -1)))  # on this machine: ask the OS
            else:
                alive = time.time() - float(lease.get("beat", 0)) < float(lease.get("ttl", 0))
            if alive:
                out.append(lease)
        return out

    def acquire_lease(self, shared: bool = False) -> None:
        """Hold this study for this process, with a heartbeat, until :meth:`release_lease`.

        Refused while another driver holds a live lease, unless ``shared`` (drivers that
        ``--join`` a study on purpose share it, and may not ``--resume`` it).
        """
        live = [lease for lease in self.live_leases() if lease.get("pid") != os.getpid()]
        if live and not (shared and all(lease.get("shared") for lease in live)):
            other = live[0]
            raise StorageError(
                f"study {self.name!r} is being run by driver {other.get('driver')} (heartbeat "
                f"{time.time() - float(other.get('beat', 0)):.0f} s ago); wait for it to end, "
                "or stop it first"
            )
        host, pid = socket.gethostname(), os.getpid()
        self._lease_key = f"lease:{host}:{pid}"
        self._lease = {"driver": f"{host}:{pid}", "host": host, "pid": pid, "shared": shared}
        self._renew()
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="nas-lease", daemon=True)
        self._beat.start()

    def _renew(self, released: bool = False) -> None:
        assert self._lease_key is not None
        doc = {**self._lease, "beat": time.time(), "ttl": LEASE_SECONDS, "released": released}
        self._study.set_user_attr(self._lease_key, doc)

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE_SECONDS / 3):
            with contextlib.suppress(Exception):  # a missed beat only shortens the lease
                self._renew()

    def release_lease(self) -> None:
        if self._beat is not None:
            self._stop.set()
            self._beat.join(timeout=5)
            self._beat = None
        if self._lease_key is not None:
            with contextlib.suppress(Exception):
                self._renew(released=True)
            self._lease_key = None

    # ---------------------------------------------------------------- the dashboard

    @property
    def optuna_storage(self) -> Any:
        """The underlying Optuna storage, for tools that speak Optuna (the dashboard)."""
        return self._study._storage


def find_record(store: TrialStore, trial: str, objectives: Any = None) -> TrialRecord:
    """A trial by number, or ``best`` (:func:`nas.objectives.best_records`)."""
    if trial == "best":
        from nas.objectives import best_records, objectives_of

        best = best_records(store.records(), objectives or objectives_of(store))
        if not best:
            raise StorageError(f"study {store.name!r} has no completed trial")
        return best[0]
    try:
        number = int(trial)
    except ValueError:
        raise StorageError(
            f"--trial must be 'best' or a trial number, got {trial[:40]!r}"
        ) from None
    return store.record(number)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a lease's or a Ray session's driver)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _one_line(e: BaseException) -> str:
    if e.__cause__ is not None and "exception is raised during the commit" in str(e):
        e = e.__cause__  # Optuna's wrapper hides what SQLite said ("disk image is malformed")
    text = str(e).strip().splitlines()
    return mask_url(f"{type(e).__name__}: {text[0] if text else ''}")[:300] or ""


__all__ = [
    "LEASE_SECONDS",
    "Pending",
    "TrialRecord",
    "TrialStore",
    "default_storage",
    "find_record",
    "mask_url",
    "open_storage",
    "sqlite_path",
]
