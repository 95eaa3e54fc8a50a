"""Optuna storage as the system of record for every trial."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nas.errors import StorageError

optuna.logging.set_verbosity(logging.WARNING)


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').as_posix()}"


def _sqlite_fast_commits(storage: optuna.storages.RDBStorage) -> None:
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


def _storage(url: str, create: bool) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.exists():
            raise StorageError(f"cannot open storage {url}: {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        try:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=None)
            break
        except Exception as e:  # SQLAlchemy raises many kinds; all mean "cannot open"
            # Drivers starting together on a fresh server database race to create the
            # tables; the loser's error goes away on a second try.
            if attempt == 2 or url.startswith("sqlite") or "already exists" not in str(e):
                raise StorageError(f"cannot open storage {url}: {str(e).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    if url.startswith("sqlite:///"):
        _sqlite_fast_commits(storage)
    return storage


def set_trial_user_attrs(study: optuna.Study, trial_id: int, attrs: dict[str, Any]) -> None:
    """Several user attributes of a trial in one transaction (one commit, not one per key)."""
    backend = getattr(study._storage, "_backend", study._storage)
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
        study._storage.set_trial_user_attr(trial_id, key, value)


def open_study(
    url: str,
    name: str,
    *,
    create: bool,
    resume: bool,
    directions: list[str] | None = None,
    join: bool = False,
) -> optuna.Study:
    """Open (or create) the study ``name`` in ``url``.

    Creating a study that exists without ``resume`` (or ``join``) is refused, so nothing
    stored is overwritten or mixed by accident. ``join`` opens the study whether or not it
    exists yet (several drivers starting at once: the first creates it). ``directions``
    (one per objective, default ``["maximize"]``) must match an existing study's.
    """
    storage = _storage(url, create)
    directions = list(directions or ["maximize"])
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if exists and create and not (resume or join):
        raise StorageError(
            f"study {name!r} already exists in {url}; pass --resume to continue it or choose "
            "another --study / --out"
        )
    if not exists:
        if not create:
            raise StorageError(f"no study {name!r} in {url}")
        if resume and not join:
            raise StorageError(f"cannot resume: no study {name!r} in {url}")
        try:
            return optuna.create_study(storage=storage, study_name=name, directions=directions)
        except optuna.exceptions.DuplicatedStudyError:
            if not join:
                raise StorageError(f"study {name!r} was created by another driver") from None
    study = optuna.load_study(storage=storage, study_name=name)
    if create:
        stored = [d.name.lower() for d in study.directions]
        if stored != directions:
            raise StorageError(
                f"study {name!r} optimises {stored}, not {directions}; use the same "
                "--objectives or another --study"
            )
    return study


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

    @property
    def accuracy(self) -> float:
        return float(self.metrics.get("accuracy", float("nan")))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def trial_record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    ua = t.user_attrs
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
    )


def records(study: optuna.Study) -> list[TrialRecord]:
    return [trial_record(t) for t in study.get_trials(deepcopy=False)]


def best_record(study: optuna.Study) -> TrialRecord:
    done = [r for r in records(study) if r.state == "COMPLETE"]
    if not done:
        raise StorageError(f"study {study.study_name!r} has no completed trial")
    return max(done, key=lambda r: (r.accuracy, -r.number))


def find_record(study: optuna.Study, trial: str) -> TrialRecord:
    if trial == "best":
        return best_record(study)
    try:
        number = int(trial)
    except ValueError:
        raise StorageError(f"--trial must be 'best' or a trial number, got {trial!r}") from None
    for r in records(study):
        if r.number == number:
            return r
    raise StorageError(f"study {study.study_name!r} has no trial {number}")


def set_json_attr(study: optuna.Study, key: str, value: Any) -> None:
    study.set_user_attr(key, json.loads(json.dumps(value)))
