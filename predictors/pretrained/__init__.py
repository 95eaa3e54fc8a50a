"""Pretrained predictors, usable by name wherever a predictor name is: ``pretrained:gennape``.

Each one is a saved predictor folder (``predictor.json`` + ``arrays.safetensors``, the
format of :meth:`nas.predictors.base.Predictor.save`) shipped beside this module, made by one
documented command from the labelled tables in ``../shared/data`` (:data:`RECIPES`;
:func:`command` prints it, ``python -m nas.predictors.pretrained NAME`` runs it)::

    nas predict --predictor pretrained:gennape --space nb201 --arch best_cifar10 --json
    nas predictor evaluate --predictor pretrained:gennape --test nbmacro       # no fitting
    nas search ... --strategy neural-predictor --predictor pretrained:gennape

By name, a pretrained predictor is loaded, not fitted: ``predict`` uses it as it is;
``fit`` on new labelled data fine-tunes it (:meth:`~nas.predictors.base.Predictor.fine_tune`)
instead of starting again, so that a search's surrogate keeps what pretraining learned.
Its test sets exclude the architectures it was trained on (:attr:`Recipe.train` with
:attr:`Recipe.seed`).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import DataError, UnknownName

if TYPE_CHECKING:
    from nas.predictors.base import Predictor

PREFIX = "pretrained:"
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Recipe:
    """How a pretrained predictor is made: ``nas predictor fit`` with these arguments."""

    predictor: str
    train: tuple[str, ...]
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


RECIPES: dict[str, Recipe] = {
    "gennape": Recipe(
        "gennape",
        ("nb101", "nb201:cifar10:5000", "nb301", "nbmacro:3000"),
        seed=0,
        note="GENNAPE on all four labelled families (NB201 and NAS-Bench-Macro subsampled)",
    ),
}
"""Every pretrained predictor by name."""


def is_pretrained(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def recipe(name: str) -> tuple[str, Recipe]:
    """``(short name, recipe)`` of ``pretrained:NAME`` (or ``NAME``)."""
    short = name[len(PREFIX) :] if is_pretrained(name) else name
    if short not in RECIPES:
        raise UnknownName(
            f"unknown pretrained predictor {name!r}; choose one of "
            f"{[PREFIX + n for n in sorted(RECIPES)]}"
        )
    return short, RECIPES[short]


def folder(name: str) -> Path:
    return HERE / recipe(name)[0]


def command(name: str) -> str:
    """The command line that makes ``pretrained:NAME`` (from the repository root)."""
    short, r = recipe(name)
    args = ["nas", "predictor", "fit", "--predictor", r.predictor, "--train", ",".join(r.train)]
    args += ["--seed", str(r.seed), "--out", f"predictors/pretrained/{short}"]
    for k, v in sorted(r.options.items()):
        args += ["--option", f"{k}={v}"]
    return shlex.join(args)


def load(name: str, seed: int | None = None) -> Predictor:
    """The pretrained predictor ``pretrained:NAME``, ready to predict (``seed``: the seed
    its fine-tuning uses, by default its own)."""
    from nas.predictors.base import load_predictor

    path = folder(name)
    if not (path / "predictor.json").exists():
        raise DataError(
            f"the pretrained predictor {name!r} is not in this installation ({path}); make "
            f"it with: {command(name)}"
        )
    p = load_predictor(path)
    p.from_pretrained = recipe(name)[0]
    if seed is not None:
        p.seed = int(seed)
    return p


def names() -> list[str]:
    """Every pretrained predictor's name (``pretrained:...``)."""
    return [PREFIX + n for n in sorted(RECIPES)]


def make(name: str) -> Path:
    """Run the recipe of ``pretrained:NAME`` and save the result beside this module."""
    from nas import api

    short, r = recipe(name)
    api.fit_predictor(r.predictor, list(r.train), HERE / short, seed=r.seed, options=r.options)
    return HERE / short
