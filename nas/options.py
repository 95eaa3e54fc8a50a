"""Typed option sets: one frozen dataclass per strategy, evaluator or predictor.

A pluggable piece declares its options as a frozen dataclass (its ``Options``); whatever
comes from a config file, ``--set`` overrides or the Python API is turned into that class by
:func:`build_options`, which refuses unknown keys (naming the valid ones) and values of the
wrong type before any work starts. Range checks live in the dataclass's ``__post_init__``
(raise :class:`~nas.errors.ConfigError` there).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class EvolutionOptions:
    ...     population: int = 30
    ...     tournament: int = 10
    >>> build_options(EvolutionOptions, {"population": 50}, "strategy_options")
    EvolutionOptions(population=50, tournament=10)
    >>> build_options(EvolutionOptions, {"popsize": 50}, "strategy_options")
    Traceback (most recent call last):
    ...
    nas.errors.ConfigError: strategy_options: unknown key 'popsize'; valid keys: population, tournament
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from nas.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """The option set of a piece that takes none."""


def option_fields(schema: type) -> dict[str, dataclasses.Field]:
    """The declared options of ``schema`` by name."""
    return {f.name: f for f in dataclasses.fields(schema)}


def build_options(schema: type[T], values: Mapping[str, Any] | None, where: str) -> T:
    """An instance of the frozen dataclass ``schema`` from ``values``, checked.

    Args:
        schema: the option dataclass.
        values: option name -> value (numbers may arrive as text from the command line).
        where: how the user names this option set in messages (``strategy_options``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or the dataclass's own check.
    """
    if isinstance(values, schema):
        return values
    values = dict(values or {})
    known = option_fields(schema)
    unknown = sorted(set(values) - set(known))
    if unknown:
        names = ", ".join(sorted(known)) or "(none: it takes no options)"
        plural = "s" if len(unknown) > 1 else ""
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise ConfigError(f"{where}: unknown key{plural} {shown}; valid keys: {names}")
    hints = typing.get_type_hints(schema)
    checked = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    try:
        return schema(**checked)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from None


def coerce(value: Any, hint: Any, name: str) -> Any:
    """``value`` as the type ``hint`` says, or a :class:`ConfigError` naming ``name``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, name)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{name}: {_show(value)} fits none of {hint}"
        )
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}: {_show(value)} is not one of {list(args)}")
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a table of options, got {_show(value)}")
        return dict(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {_show(value)}")
        inner = args[0] if args else Any
        return tuple(coerce(v, inner, f"{name}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{name}: expected true or false, got {_show(value)}")
    if hint is int:
        return _number(value, int, name)
    if hint is float:
        return _number(value, float, name)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ConfigError(f"{name}: expected text, got {_show(value)}")
    if isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{name}: expected {getattr(hint, '__name__', hint)}, got {_show(value)}")


def _number(value: Any, kind: type, name: str) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {_show(value)}")
    if isinstance(value, str):
        try:
            value = (
                float(value)
                if kind is float or "." in value or "e" in value.lower()
                else int(value)
            )
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {_show(value)}") from None
    if not isinstance(value, int | float):
        raise ConfigError(f"{name}: expected a number, got {_show(value)}")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{name}: expected a whole number, got {_show(value)}")
        return int(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name}: expected a finite number, got {_show(value)}")
    return float(value)


def _show(value: Any, limit: int = 40) -> str:
    """A short excerpt of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """A range check for ``__post_init__``: ``value`` > 0 (or >= 0)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}, got {_show(value)}")


__all__ = ["NoOptions", "build_options", "coerce", "option_fields", "positive"]
