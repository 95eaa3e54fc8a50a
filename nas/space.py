"""Search-space and genotype protocols.

A :class:`SearchSpace` is a frozen description; a :class:`Genotype` is an immutable,
hashable value in it. Sampling and mutation return new genotypes and never change the space.
Randomness is always an argument (a ``numpy.random.Generator``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nas.errors import InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.inputs import kind, read_json


class Genotype(ABC):
    """An architecture in its space's native, compact form.

    Subclasses are frozen dataclasses (hashable, comparable) that validate on construction
    and raise :class:`~nas.errors.InvalidGenotype` naming the bad field.
    """

    space_name: ClassVar[str] = ""

    @abstractmethod
    def to_str(self) -> str:
        """The space's native string notation (round-trips through ``space.parse``)."""

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space_name, "arch": self.to_str()}

    def __str__(self) -> str:
        return self.to_str()


class SearchSpace(ABC):
    """A frozen description of a set of architectures.

    Subclasses set ``name`` and implement the abstract methods. ``choices`` describes the
    space as a list of categorical decisions (used by ``encode``/``decode`` and by Optuna's
    samplers); spaces whose structure is not a fixed list of categorical choices override
    ``encode``/``decode``/``size`` and ``suggest``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_dataset: ClassVar[str] = "digits"
    datasets: ClassVar[tuple[str, ...]] = ("digits",)
    supernet: ClassVar[str] = ""
    """``"module:Class"`` of the space's weight-sharing :class:`nas.supernet.Supernet`
    (served by the ``supernet`` evaluator); empty when it has none."""

    # ------------------------------------------------------------------ required

    @abstractmethod
    def choices(self) -> list[tuple[str, int]]:
        """The categorical decisions as ``(name, number of options)``, in encoding order."""

    @abstractmethod
    def from_indices(self, indices: Sequence[int]) -> Genotype:
        """The genotype for one option index per decision."""

    @abstractmethod
    def to_indices(self, genotype: Genotype) -> list[int]:
        """Inverse of :meth:`from_indices`."""

    @abstractmethod
    def parse(self, text: str) -> Genotype:
        """A genotype from its native string (raises :class:`InvalidGenotype`)."""

    @abstractmethod
    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        """Expand a genotype into the universal architecture graph for ``dataset``."""

    # ------------------------------------------------------------------ defaults

    def known(self) -> Mapping[str, Genotype]:
        """Published or reference architectures by name."""
        return {}

    def smallest(self) -> Genotype | None:
        """The architecture whose every cost (params, FLOPs, latency) is the space's minimum,
        where the space knows one; ``None`` otherwise. A hard limit below its cost is
        refused before a search starts."""
        return None

    @property
    def size(self) -> int:
        """Number of genotypes (the product of the choice cardinalities)."""
        return math.prod(n for _, n in self.choices())

    def sample(self, rng: np.random.Generator) -> Genotype:
        """A uniformly random genotype."""
        return self.from_indices([int(rng.integers(n)) for _, n in self.choices()])

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> Genotype:
        """A genotype that differs from ``genotype`` in exactly one decision."""
        idx = self.to_indices(genotype)
        mutable = [i for i, (_, n) in enumerate(self.choices()) if n > 1]
        i = int(rng.choice(mutable))
        n = self.choices()[i][1]
        new = int(rng.integers(n - 1))
        idx[i] = new if new < idx[i] else new + 1
        return self.from_indices(idx)

    def crossover(self, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
        """Each decision taken from ``a`` or ``b`` with equal probability."""
        ia, ib = self.to_indices(a), self.to_indices(b)
        return self.from_indices(
            [x if rng.random() < 0.5 else y for x, y in zip(ia, ib, strict=True)]
        )

    def neighbours(self, genotype: Genotype) -> list[Genotype]:
        """Every genotype that differs in exactly one decision."""
        idx = self.to_indices(genotype)
        out = []
        for i, (_, n) in enumerate(self.choices()):
            for v in range(n):
                if v != idx[i]:
                    new = list(idx)
                    new[i] = v
                    out.append(self.from_indices(new))
        return out

    def contains(self, genotype: Any) -> bool:
        """Whether ``genotype`` is a valid member of this space."""
        try:
            idx = self.to_indices(genotype)
        except (InvalidGenotype, TypeError, AttributeError, KeyError, ValueError):
            return False
        return len(idx) == len(self.choices()) and all(
            0 <= v < n for v, (_, n) in zip(idx, self.choices(), strict=True)
        )

    def encode(self, genotype: Genotype) -> np.ndarray:
        """A fixed-length one-hot vector (concatenated per decision)."""
        parts = []
        for v, (_, n) in zip(self.to_indices(genotype), self.choices(), strict=True):
            one = np.zeros(n, np.float32)
            one[v] = 1.0
            parts.append(one)
        return np.concatenate(parts)

    def decode(self, vector: Sequence[float]) -> Genotype:
        """Inverse of :meth:`encode` (argmax per decision)."""
        vec = np.asarray(vector)
        total = sum(n for _, n in self.choices())
        if vec.shape != (total,):
            raise InvalidGenotype(
                f"{self.name}: encoding must have length {total}, got {vec.shape}"
            )
        idx, pos = [], 0
        for _, n in self.choices():
            idx.append(int(np.argmax(vec[pos : pos + n])))
            pos += n
        return self.from_indices(idx)

    def suggest(self, trial: Any) -> Genotype:
        """A genotype drawn through an Optuna trial (one categorical per decision)."""
        return self.from_indices(
            [trial.suggest_categorical(name, list(range(n))) for name, n in self.choices()]
        )

    def resolve(self, arch: str) -> Genotype:
        """A genotype from a native string, a known name or a path to a JSON file."""
        arch = arch.strip()
        known = self.known()
        if arch in known:
            return known[arch]
        p = Path(arch)
        if arch.endswith(".json"):
            if kind(p) is None:
                raise InvalidGenotype(f"architecture file {arch} does not exist")
            data = read_json(p, "architecture file", InvalidGenotype)
            if isinstance(data, dict) and "genotype" in data:
                data = data["genotype"]
            if not isinstance(data, dict) or "arch" not in data:
                raise InvalidGenotype(f"{arch}: expected a JSON object with an 'arch' field")
            if data.get("space", self.name) != self.name:
                raise InvalidGenotype(
                    f"{arch} holds a {data['space']!r} architecture, not a {self.name!r} one"
                )
            return self.parse(str(data["arch"]))
        return self.parse(arch)

    def check_dataset(self, dataset: str | None) -> str:
        dataset = dataset or self.default_dataset
        if dataset not in self.datasets:
            raise UnknownName(
                f"space {self.name!r} has no network for dataset {dataset!r}; "
                f"choose one of {list(self.datasets)}"
            )
        return dataset

    def lookup(self, genotype: Genotype, dataset: str) -> dict[str, float]:
        """Tabular benchmark metrics (``accuracy`` in percent); spaces with a table override."""
        raise UnknownName(f"space {self.name!r} has no benchmark table")

    def check_table(self, dataset: str) -> None:
        """Raise (missing file, unknown dataset) unless the table can answer for ``dataset``."""
        self.lookup(self.sample(np.random.default_rng(0)), dataset)

    def has_table(self) -> bool:
        return type(self).lookup is not SearchSpace.lookup
