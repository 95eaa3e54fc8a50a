"""The one module that touches version-sensitive corners of jax and flax.

The platform supports a range of jax and flax releases (``pyproject.toml``: the oldest that
pass ``make test-bounds`` up to the GPU machines' jax 0.11), and a few things it relies on
are not settled API:

- how an ``nnx.State`` flattens: the tree paths of its leaves (``DictKey``s, then a
  ``GetAttrKey('value')`` for the Variable in flax 0.12; flax announces that ``State`` will
  become a plain ``dict``). Saved weights (safetensors) and saved predictors are keyed by
  :func:`state_key`, which keeps the on-disk names the same whatever the release does.
- walking an object graph: ``nnx.iter_graph`` / ``nnx.iter_modules`` (flax moved these from
  methods to functions in 0.11 and deprecated the methods; where they go next, only this
  module changes).
- the XLA FFI: ``jax.ffi`` (it was ``jax.extend.ffi`` until jax 0.4.38).

Everything else uses the public API directly. optuna's private storage API goes through
the trial store module (``nas.storage``), not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any


def _part(p: Any) -> str:
    for attr in ("key", "name", "idx"):
        value = getattr(p, attr, None)
        if value is not None:
            return str(value)
    return str(p)


def state_key(path: tuple[Any, ...]) -> str:
    """A dotted name for the leaf at ``path`` of a flattened ``nnx.State``
    (``jax.tree_util.tree_flatten_with_path``), e.g. ``layers.3.kernel.value``.

    The Variable's own ``value`` step is dropped wherever the release puts it (or leaves it
    out) and one ``.value`` is appended, so that names written by flax 0.12 (the format of
    the weights files) are what every supported release reads and writes.
    """
    parts = [_part(p) for p in path]
    if parts and parts[-1] in ("value", "raw_value"):
        parts.pop()
    return ".".join([*parts, "value"])


def named_leaves(state: Any) -> list[tuple[str, Any]]:
    """``(state_key(path), leaf)`` for every leaf of ``state``, in tree order."""
    import jax

    return [(state_key(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]]


def iter_graph(node: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every ``(path, value)`` reachable from ``node`` (modules, Variables, attributes)."""
    from flax import nnx

    return nnx.iter_graph(node)


def iter_modules(node: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every ``(path, module)`` of ``node``, ``node`` itself included."""
    from flax import nnx

    return nnx.iter_modules(node)


def ffi() -> ModuleType:
    """jax's FFI module (``ffi_call``, ``register_ffi_target``, ``pycapsule``, ``include_dir``)."""
    import jax

    return jax.ffi


__all__ = ["ffi", "iter_graph", "iter_modules", "named_leaves", "state_key"]
