"""Training checkpoints with orbax: every N steps, on SIGTERM, and resumable after kill -9.

A checkpoint holds the whole training state as a flat list of arrays: the model's and the
optimiser's (``nnx.state`` of both, random-number keys as their raw key data) and whatever
else a trainer declares (a distillation teacher, a phase index). Orbax writes each step to a
temporary folder and renames it when complete, so a process killed at any moment leaves the
last complete checkpoint behind, never a torn one. Because every batch and every sampled
subnet is a pure function of ``(seed, step)`` (:mod:`nas.pipeline`), restoring step ``s`` and
running on gives bit for bit the weights of a run that was never interrupted.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nas.errors import StorageError


def to_numpy(leaves: list[Any]) -> dict[str, np.ndarray]:
    """Leaves as numpy arrays keyed by position (random keys as their key data)."""
    out = {}
    for i, v in enumerate(leaves):
        if isinstance(v, jax.Array) and jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
            v = jax.random.key_data(v)
        out[f"{i:05d}"] = np.asarray(v)
    return out


def from_numpy(saved: dict[str, np.ndarray], like: list[Any]) -> list[Any]:
    """The inverse of :func:`to_numpy`, shaped after the current leaves ``like``."""
    if len(saved) != len(like):
        raise StorageError(
            f"checkpoint holds {len(saved)} arrays, the training state has {len(like)}: it was "
            "written by other settings; remove the checkpoint folder to start afresh"
        )
    out = []
    for i, cur in enumerate(like):
        v = saved[f"{i:05d}"]
        if isinstance(cur, jax.Array) and jax.dtypes.issubdtype(cur.dtype, jax.dtypes.prng_key):
            out.append(jax.random.wrap_key_data(np.asarray(v), impl=jax.random.key_impl(cur)))
            continue
        if np.shape(v) != np.shape(cur):
            raise StorageError(
                f"checkpoint array {i} has shape {np.shape(v)}, the training state "
                f"{np.shape(cur)}: remove the checkpoint folder to start afresh"
            )
        out.append(jax.numpy.asarray(v, dtype=getattr(cur, "dtype", None)))
    return out


class Checkpointer:
    """Orbax checkpoints of one training run in ``directory``.

    Args:
        directory: the run's checkpoint folder (created).
        every: save after every ``every`` completed steps (0: only on request and SIGTERM).
        keep: how many checkpoints to keep.
    """

    def __init__(self, directory: str | Path, every: int = 0, keep: int = 2) -> None:
        import orbax.checkpoint as ocp

        self.directory = Path(directory).resolve()
        self.every = int(every)
        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The number of completed steps of the newest checkpoint, or ``None``."""
        return self._manager.latest_step()

    def due(self, done: int) -> bool:
        """Whether a checkpoint is due after ``done`` completed steps."""
        return self.every > 0 and done % self.every == 0

    def save(self, done: int, leaves: list[Any], meta: dict[str, Any] | None = None) -> None:
        """Save the state after ``done`` completed steps (once per step)."""
        if done in self._manager.all_steps():
            return
        ocp = self._ocp
        items = {"state": ocp.args.StandardSave(to_numpy(leaves))}
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(meta)
        self._manager.save(done, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()

    def restore(self, done: int, like: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        """The leaves (shaped after ``like``) and metadata of the checkpoint at ``done``."""
        ocp = self._ocp
        template = to_numpy(like)
        restored = self._manager.restore(
            done,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()
            ),
        )
        return from_numpy(dict(restored["state"]), like), dict(restored.get("meta") or {})

    def close(self) -> None:
        self._manager.close()


class Termination:
    """Turns SIGTERM into a flag the training loop checks after every step (so it can save
    a checkpoint and stop cleanly); the previous handler comes back on exit. Outside the
    main thread (where signals cannot be handled) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Termination:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


__all__ = ["Checkpointer", "Termination", "from_numpy", "to_numpy"]
