"""nas: neural architecture search on JAX.

The public surface is re-exported here; implementation lives in the submodules (the
function API of the commands in :mod:`nas.api`, loaded on first use). Heavy
dependencies (ray, onnx, matplotlib) are imported lazily where they are used.
"""

from nas import _layout
from nas.errors import (
    ConfigError,
    DataError,
    GraphError,
    InvalidGenotype,
    NasError,
    StorageError,
    UnknownName,
    UnknownOp,
)
from nas.graph import OPS, ArchGraph, CostConvention
from nas.space import Genotype, SearchSpace

_layout.install()

__version__ = "0.1.0"  # the one version source (pyproject.toml reads it)

# The Python API (nas/api.py), loaded on first use. ``search``, ``export`` and ``draw`` are
# submodule names, so those three are reached as ``nas.api.search`` & co.
_API = ("evaluate_predictor", "fit_predictor", "inspect", "predict", "spaces")


def __getattr__(name: str):
    if name == "api" or name in _API:
        import importlib

        api = importlib.import_module("nas.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"api", *_API})


__all__ = [
    "OPS",
    "ArchGraph",
    "ConfigError",
    "CostConvention",
    "DataError",
    "Genotype",
    "GraphError",
    "InvalidGenotype",
    "NasError",
    "SearchSpace",
    "StorageError",
    "UnknownName",
    "UnknownOp",
    "__version__",
    "api",
    "evaluate_predictor",
    "fit_predictor",
    "inspect",
    "predict",
    "spaces",
]
