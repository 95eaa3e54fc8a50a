"""Optuna storage as the system of record for every trial."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from nas.errors import StorageError

optuna.logging.set_verbosity(logging.WARNING)


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').as_posix()}"


def _storage(url: str, create: bool) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not create and not path.exists():
            raise StorageError(f"cannot open storage {url}: {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=None)
    except Exception as e:  # SQLAlchemy raises many kinds; all mean "cannot open"
        raise StorageError(f"cannot open storage {url}: {str(e).splitlines()[0]}") from None


def open_study(url: str, name: str, *, create: bool, resume: bool) -> optuna.Study:
    """Open (or create) the study ``name`` in ``url``.

    Creating a study that exists without ``resume`` is refused, so nothing stored is
    overwritten or mixed by accident.
    """
    storage = _storage(url, create)
    exists = name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
    if exists and create and not resume:
        raise StorageError(
            f"study {name!r} already exists in {url}; pass --resume to continue it or choose "
            "another --study / --out"
        )
    if not exists:
        if not create:
            raise StorageError(f"no study {name!r} in {url}")
        if resume:
            raise StorageError(f"cannot resume: no study {name!r} in {url}")
        return optuna.create_study(storage=storage, study_name=name, direction="maximize")
    return optuna.load_study(storage=storage, study_name=name)


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
