"""nas: neural architecture search on JAX.

The public surface is re-exported here; implementation lives in the submodules. Heavy
dependencies (ray, onnx, matplotlib) are imported lazily where they are used.
"""

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

__version__ = "0.1.0"

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
]
