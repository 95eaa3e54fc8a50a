"""One run configuration: :class:`SearchConfig`, built the same way by a file, flags and the API.

``nas search --config run.toml`` reads a TOML file whose top-level keys are the long flags of
``nas search`` with underscores, and whose tables ``[strategy_options]`` and
``[evaluator_options]`` hold the strategy's and the evaluator's own settings::

    space = "nb201"
    strategy = "evolution"
    evaluator = "train"
    budget = 40
    max_flops = "600M"

    [strategy_options]
    population = 20
    tournament = 5

    [evaluator_options]
    steps = 200

Flags given on the command line override the file, and ``--set KEY=VALUE`` (``--set
strategy_options.population=50``) overrides either. ``nas.api.search`` takes the same keys
as keyword arguments. An unknown key anywhere is one line naming the valid keys; so is an
option the chosen strategy or evaluator does not declare (checked when the run is
prepared, before any work). The configuration is stored with the study (the storage
password masked), shown in the report, and a resumed run must not conflict with it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas.errors import ConfigError
from nas.options import coerce

# Flags that are a shortcut for one option of the strategy or the evaluator.
SHORTCUTS = {
    "steps": "evaluator_options",
    "order": "strategy_options",
    "predictor": "strategy_options",
}
# What a resumed (or joined) run must share with the stored configuration.
FIXED_ON_RESUME = (
    "space",
    "strategy",
    "evaluator",
    "dataset",
    "seed",
    "objectives",
    "max_flops",
    "max_params",
    "max_latency",
    "latency_table",
    "strategy_options",
    "evaluator_options",
)
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_BUDGET = 10_000_000
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_quantity(text: str | float, name: str = "limit") -> float:
    """``600M`` -> 6e8, ``3.5M`` -> 3.5e6; plain numbers pass through. Positive and finite."""
    if isinstance(text, bool):
        raise ConfigError(f"--{name.replace('_', '-')}: not a quantity: {text!r}")
    t = str(text).strip().lower()
    try:
        value = float(t[:-1]) * _SUFFIX[t[-1]] if t and t[-1] in _SUFFIX else float(t)
    except ValueError:
        shown = str(text)[:40]
        raise ConfigError(
            f"--{name.replace('_', '-')}: not a quantity: {shown!r} (use e.g. 600M, 3.5M, 2e9)"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--{name.replace('_', '-')} must be a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search run needs to know, typed and checked.

    Attributes:
        space, strategy, evaluator: registered names (:mod:`nas.registry`).
        budget: trials to finish (one-shot strategies: their search steps; one trial).
        dataset: network variant and data (default: the evaluator's / space's default).
        data_dir: a local data folder (CIFAR, an image folder, text files).
        seed: every random choice of the run.
        objectives: names, optionally ``:min``/``:max``; empty: the evaluator's first metric.
        max_flops, max_params, max_latency: hard limits (``"600M"`` or a number).
        latency_table: latency model for the supernet evaluator and ``max_latency``.
        strategy_options, evaluator_options: the strategy's and evaluator's own options.
        storage: SQLAlchemy URL (default: SQLite in the run folder).
        study: study name (default: the run folder's name).
        out: run folder (default ``runs/<study>``, else ``runs/<space>-<strategy>-<seed>``).
        resume: continue a study no live driver holds; join: share one with other drivers.
        workers: parallel evaluations (``None``: every core); address: a Ray cluster.
        max_retries: retries of a trial whose worker died.
        progress: draw progress bars; log_level: ``debug``, ``info``, ``warning``, ``error``.
        tensorboard: log every trial to TensorBoard event files in ``<out>/tensorboard``.
    """

    space: str
    strategy: str
    evaluator: str
    budget: int
    dataset: str | None = None
    data_dir: str | None = None
    seed: int = 0
    objectives: tuple[str, ...] = ()
    max_flops: float | None = None
    max_params: float | None = None
    max_latency: float | None = None
    latency_table: str | None = None
    strategy_options: dict[str, Any] = field(default_factory=dict)
    evaluator_options: dict[str, Any] = field(default_factory=dict)
    storage: str | None = None
    study: str | None = None
    out: str | None = None
    resume: bool = False
    join: bool = False
    workers: int | None = 1
    address: str | None = None
    max_retries: int = 2
    progress: bool = True
    log_level: str = "warning"
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.budget <= MAX_BUDGET:
            raise ConfigError(f"--budget must be between 1 and {MAX_BUDGET:,}, got {self.budget}")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be between 0 and 2**32 - 1, got {self.seed}")
        if self.study is not None and not STUDY_NAME.match(self.study):
            raise ConfigError(
                f"--study {self.study[:40]!r}: a study name is 1-100 letters, digits, '.', "
                "'_' or '-', starting with a letter or digit"
            )
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.max_retries < 0:
            raise ConfigError(f"--max-retries must be at least 0, got {self.max_retries}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"--log-level must be one of {list(LOG_LEVELS)}, got {self.log_level!r}"
            )
        if self.resume and self.join:
            raise ConfigError("--join already continues a shared study; drop --resume")
        for key in ("space", "strategy", "evaluator"):
            if not getattr(self, key):
                raise ConfigError(f"--{key} is required (a flag or a key of the --config file)")

    # ---------------------------------------------------------------- derived values

    @property
    def limits(self) -> dict[str, float]:
        """Hard limits by cost key (``flops``, ``params``, ``latency``)."""
        named = {"flops": self.max_flops, "params": self.max_params, "latency": self.max_latency}
        return {k: v for k, v in named.items() if v is not None}

    @property
    def run_dir(self) -> Path:
        return Path(self.out or f"runs/{self.study or f'{self.space}-{self.strategy}-{self.seed}'}")

    # ---------------------------------------------------------------- building

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> SearchConfig:
        """A configuration from plain values (a file's, flags', keyword arguments'), checked.

        Unknown keys are refused; shortcut keys (``steps``, ``order``, ``predictor``) move
        into their options table; quantities (``"600M"``) and lists (``"accuracy,flops"``)
        are parsed.
        """
        values = dict(values)
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, table in SHORTCUTS.items():
            if key in values:
                value = values.pop(key)
                if value is not None:
                    opts = dict(values.get(table) or {})
                    if key in opts and opts[key] != value:
                        raise ConfigError(
                            f"{key} is given twice: {value!r} and {table}.{key}={opts[key]!r}"
                        )
                    values[table] = {**opts, key: value}
        unknown = sorted(set(values) - set(known))
        if unknown:
            valid = ", ".join(sorted([*known, *SHORTCUTS]))
            shown = ", ".join(repr(k[:40]) for k in unknown[:5])
            raise ConfigError(f"unknown configuration key {shown}; valid keys: {valid}")
        for name in ("max_flops", "max_params", "max_latency"):
            if values.get(name) is not None:
                values[name] = parse_quantity(values[name], name)
        if isinstance(values.get("objectives"), str):
            values["objectives"] = [s.strip() for s in values["objectives"].split(",")]
        if values.get("workers") == "auto":
            values["workers"] = None
        hints = _hints(cls)
        checked = {k: coerce(v, hints[k], f"--{k.replace('_', '-')}") for k, v in values.items()}
        for key in ("strategy_options", "evaluator_options"):
            checked[key] = {str(k): _plain(v) for k, v in (checked.get(key) or {}).items()}
        if checked.get("objectives") and any(not o for o in checked["objectives"]):
            raise ConfigError(
                f"--objectives needs comma-separated names, got {values['objectives']!r}"
            )
        missing = [
            k for k in ("space", "strategy", "evaluator", "budget") if checked.get(k) is None
        ]
        if missing:
            raise ConfigError(f"--{missing[0]} is required (a flag or a key of the --config file)")
        return cls(**checked)

    @classmethod
    def from_sources(
        cls,
        file: str | Path | None = None,
        flags: Mapping[str, Any] | None = None,
        sets: Sequence[str] = (),
    ) -> SearchConfig:
        """File, then flags given on the command line, then ``--set KEY=VALUE`` overrides."""
        values = read_toml(file) if file else {}
        for key, value in (flags or {}).items():
            if key in SHORTCUTS:
                table = SHORTCUTS[key]
                values[table] = {**(values.get(table) or {}), key: value}
            else:
                values[key] = value
        for item in sets:
            apply_set(values, item)
        return cls.build(values)

    def replace(self, **changes: Any) -> SearchConfig:
        return SearchConfig.build({**self.to_json(masked=False), **changes})

    # ---------------------------------------------------------------- storing

    def to_json(self, masked: bool = True) -> dict[str, Any]:
        """The configuration as JSON (``masked``: the storage password as ``***``)."""
        from nas.storage import mask_url

        doc = dataclasses.asdict(self)
        doc["objectives"] = list(self.objectives)
        if masked:
            doc["storage"] = mask_url(self.storage)
            doc["address"] = mask_url(self.address)
        return doc

    def conflicts(self, stored: Mapping[str, Any]) -> list[str]:
        """The settings that differ from a stored configuration (for ``--resume``/``--join``).

        A joining driver keeps its own ``seed``: drivers that share a study sample from
        different streams (with one seed they would propose the same candidates)."""
        mine = self.to_json()
        out = []
        for key in FIXED_ON_RESUME:
            if key == "seed" and self.join:
                continue
            if key in stored and _norm(stored[key]) != _norm(mine[key]):
                out.append(f"{key}={_short(stored[key])} (now {_short(mine[key])})")
        return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """A run configuration file as plain values; an unreadable, oversized (1 MiB), non-regular
    or invalid file is one line."""
    from nas.inputs import read_text

    text = read_text(path, "--config", ConfigError, limit=2**20)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path} is not valid TOML: {str(e).splitlines()[0]}") from None


def apply_set(values: dict[str, Any], item: str) -> None:
    """One ``--set KEY=VALUE`` (``KEY`` may be ``table.key``); the value is read as JSON
    where it parses (numbers, true/false, lists), else kept as text."""
    key, eq, raw = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ConfigError(f"--set {item[:60]!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    table, dot, sub = key.partition(".")
    if dot:
        if table not in ("strategy_options", "evaluator_options"):
            raise ConfigError(
                f"--set {key[:60]!r}: only strategy_options.KEY and evaluator_options.KEY are tables"
            )
        values[table] = {**(values.get(table) or {}), sub: value}
    else:
        values[key] = value


def _hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _plain(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, list | tuple | dict) else v


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def _short(v: Any, limit: int = 60) -> str:
    text = json.dumps(v, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["SHORTCUTS", "SearchConfig", "apply_set", "parse_quantity", "read_toml"]
