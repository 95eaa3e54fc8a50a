"""Exception hierarchy.

Every error a user can cause derives from :class:`NasError`; the CLI turns it into a one-line
message and exit code 2. ``assert`` is reserved for internal invariants.
"""

from __future__ import annotations


class NasError(Exception):
    """Base class of every user-facing error of the platform."""


class InvalidGenotype(NasError, ValueError):
    """A genotype (architecture description) is malformed or outside its space."""


class GraphError(NasError, ValueError):
    """An architecture graph is invalid: a cycle, a shape mismatch, a bad attribute."""


class UnknownOp(GraphError):
    """An operation type outside the closed IR vocabulary."""


class UnknownName(NasError, KeyError):
    """A space, strategy, evaluator, dataset, predictor or architecture name is unknown."""

    def __str__(self) -> str:  # KeyError quotes its message; we want plain text.
        return str(self.args[0]) if self.args else ""


class ConfigError(NasError, ValueError):
    """Inconsistent or impossible settings (for example an unsatisfiable constraint)."""


class DataError(NasError, OSError):
    """A dataset or data file is missing or malformed."""


class StorageError(NasError):
    """The trial storage cannot be opened or does not hold what was asked for."""
