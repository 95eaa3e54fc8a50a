"""Callbacks of a search: told of every finished trial and of the end of the run.

``nas.api.search(..., callbacks=[...])`` takes :class:`Callback` objects or plain functions
(called as ``on_trial_complete(record)``). The one built in,
:class:`TensorBoardCallback`, writes every trial's objectives, metrics and cost, and the best
value so far, as TensorBoard scalars (``tensorboardX``: ``pip install 'nasjax[tensorboard]'``);
``nas search --tensorboard`` turns it on (event files in ``<out>/tensorboard``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError

if TYPE_CHECKING:
    from nas.config import SearchConfig
    from nas.storage import TrialRecord
    from nas.summary import SearchResult


class Callback:
    """Override what you need; both methods do nothing by default."""

    def on_trial_complete(self, record: TrialRecord) -> None:
        """A trial finished (completed or failed); ``record`` is what the study stored."""

    def on_search_end(self, result: SearchResult) -> None:
        """The search finished; ``result`` is what it returns."""


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[TrialRecord], Any]) -> None:
        self.fn = fn

    def on_trial_complete(self, record: TrialRecord) -> None:
        self.fn(record)


class TensorBoardCallback(Callback):
    """Every trial as TensorBoard scalars, step = trial number.

    Tags: ``objective/<name>`` (raw values) and ``best/<name>`` (best so far, first objective),
    ``metrics/<key>``, ``cost/<key>``; a failed trial adds 1 to ``trials/failed``.
    """

    def __init__(self, logdir: str | Path, first: tuple[str, str] | None = None) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ConfigError(
                "--tensorboard needs tensorboardX: pip install 'nasjax[tensorboard]'"
            ) from None
        self.writer = SummaryWriter(str(logdir))
        self.first = first  # (name, direction) of the first objective
        self.best = math.nan
        self.failed = 0

    def on_trial_complete(self, record: TrialRecord) -> None:
        step = record.number
        if record.state != "COMPLETE":
            self.failed += 1
            self.writer.add_scalar("trials/failed", self.failed, step)
            return
        for group, values in (("metrics", record.metrics), ("cost", record.cost)):
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(f"{group}/{key}", float(value), step)
        if self.first is not None:
            name, direction = self.first
            value = record.metrics.get(name, record.cost.get(name))
            if value is not None:
                sign = 1.0 if direction == "maximize" else -1.0
                if math.isnan(self.best) or sign * value > sign * self.best:
                    self.best = float(value)
                self.writer.add_scalar(f"objective/{name}", float(value), step)
                self.writer.add_scalar(f"best/{name}", self.best, step)
        self.writer.flush()

    def on_search_end(self, result: SearchResult) -> None:
        self.writer.close()


def as_callbacks(
    callbacks: Sequence[Callback | Callable[[TrialRecord], Any]],
    config: SearchConfig | None = None,
    out: Path | None = None,
    first: tuple[str, str] | None = None,
) -> list[Callback]:
    """The run's callbacks: the caller's (functions wrapped) plus the configured built-ins."""
    out_list = [cb if isinstance(cb, Callback) else _FunctionCallback(cb) for cb in callbacks]
    if config is not None and config.tensorboard and out is not None:
        out_list.append(TensorBoardCallback(out / "tensorboard", first))
    return out_list


__all__ = ["Callback", "TensorBoardCallback", "as_callbacks"]
