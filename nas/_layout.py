"""``nas.search_spaces`` and ``nas.predictors`` in a source checkout.

The repository keeps ``search_spaces/`` and ``predictors/`` beside ``nas/`` (the product
card's layout), but installed they are subpackages of ``nas`` (``package-dir`` in
``pyproject.toml``), so that the distribution claims no import name but ``nas``: the package
index has unrelated projects called ``predictors`` and ``benchmarks``. A wheel holds them at
``nas/search_spaces`` and ``nas/predictors``; a checkout run in place (``PYTHONPATH=.``, the
test suite, the GPU machine's copy of the tree) has them one folder up, and this finder maps
the two names there, as an editable install's own finder does.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

SUBPACKAGES = ("search_spaces", "predictors")


class CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``nas.<name>`` for ``name`` in :data:`SUBPACKAGES` in the checkout's folder
    ``<root>/<name>``; their own submodules are then found through their ``__path__``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(self, fullname: str, path=None, target=None) -> ModuleSpec | None:
        head, _, name = fullname.partition(".")
        if head != "nas" or name not in SUBPACKAGES:
            return None
        init = self.root / name / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, init, submodule_search_locations=[str(init.parent)]
        )


def install() -> None:
    """Add the finder when ``nas`` runs from a checkout (once); a wheel needs none."""
    here = Path(__file__).resolve().parent
    if all((here / n / "__init__.py").is_file() for n in SUBPACKAGES):
        return  # installed from a wheel: the subpackages are inside nas/
    root = here.parent
    if not any((root / n / "__init__.py").is_file() for n in SUBPACKAGES):
        return
    if not any(isinstance(f, CheckoutFinder) for f in sys.meta_path):
        sys.meta_path.append(CheckoutFinder(root))
