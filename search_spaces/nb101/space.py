"""The NAS-Bench-101 cell search space (423,624 unique cells).

A cell is a DAG of at most 7 vertices given as an upper-triangular adjacency matrix and one
op label per vertex: ``input`` first, ``output`` last, and for the inner vertices one of
``conv3x3-bn-relu``, ``conv1x1-bn-relu``, ``maxpool3x3``. As in ``nasbench/lib/model_spec.py``
vertices that are not on an input -> output path are pruned before anything else; a cell is
valid when the input still reaches the output and the pruned matrix has at most 9 edges
(``nasbench/api.py`` checks the edge limit after pruning, so a raw 7x7 matrix may carry more).

The genotype keeps the matrix as given (so that NASLib keys and the original API's raw specs
round-trip); :meth:`NB101Genotype.pruned` and :meth:`NB101Genotype.spec_hash` give the
computation it stands for. Two genotypes with the same ``spec_hash`` are the same network.

NB101 is not a fixed list of categorical choices: the 7x7 parametrisation (21 edge bits and 5
inner ops) is used for ``choices``/``encode``/``suggest``, but most of its points are invalid,
so sampling rejects invalid draws, mutation and neighbourhoods keep only valid results and
``size`` is the published number of unique cells.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
from nas.search_spaces.nb101 import network
from nas.search_spaces.nb101.ops import (
    CONV1X1,
    CONV3X3,
    INPUT,
    MAXPOOL3X3,
    NASLIB_OPS,
    OPS,
    OUTPUT,
)

from nas.errors import DataError, InvalidGenotype, UnknownName
from nas.graph import ArchGraph
from nas.inputs import excerpt, parse_json
from nas.paths import DATA_ENV, data_path
from nas.space import Genotype, SearchSpace

MAX_VERTICES = 7
MAX_EDGES = 9
NUM_UNIQUE = 423_624
"""Unique (isomorphism-distinct, pruned) cells of the space, as published with NAS-Bench-101
(Ying et al., 2019); counting them needs a full enumeration, so the constant is returned."""

EDGE_SLOTS = tuple((s, d) for s in range(MAX_VERTICES) for d in range(s + 1, MAX_VERTICES))
"""The 21 edges of the 7x7 parametrisation, row-major over the upper triangle."""


# --------------------------------------------------------------------------------------
# Pruning and hashing (as nasbench/lib/model_spec.py and graph_util.py)
# --------------------------------------------------------------------------------------


def prune(
    matrix: Sequence[Sequence[int]], ops: Sequence[str]
) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...]] | None:
    """Drop the vertices not on an input -> output path; ``None`` if none is left."""
    n = len(matrix)
    forward = {0}
    stack = [0]
    while stack:
        v = stack.pop()
        for w in range(v + 1, n):
            if matrix[v][w] and w not in forward:
                forward.add(w)
                stack.append(w)
    backward = {n - 1}
    stack = [n - 1]
    while stack:
        v = stack.pop()
        for w in range(v):
            if matrix[w][v] and w not in backward:
                backward.add(w)
                stack.append(w)
    keep = sorted(forward & backward)
    if len(keep) < 2:
        return None
    pm = tuple(tuple(int(matrix[a][b]) for b in keep) for a in keep)
    return pm, tuple(ops[v] for v in keep)


def hash_spec(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> str:
    """NAS-Bench-101's isomorphism-invariant hash of a *pruned* spec (the dataset's key).

    Each vertex starts from the MD5 of ``(out-degree, in-degree, label)`` (label -1 for the
    input, -2 for the output, the op's index in :data:`OPS` otherwise); then, as many rounds
    as there are vertices, it becomes the MD5 of its sorted in-neighbour hashes, ``|``, its
    sorted out-neighbour hashes, ``|``, its own hash. The result is the MD5 of the sorted list.
    """
    n = len(matrix)
    labels = [-1] + [OPS.index(op) for op in ops[1:-1]] + [-2]
    in_deg = [sum(matrix[s][v] for s in range(n)) for v in range(n)]
    out_deg = [sum(matrix[v]) for v in range(n)]
    hashes = [_md5(str((out_deg[v], in_deg[v], labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5(
                "".join(sorted(hashes[w] for w in range(n) if matrix[w][v]))
                + "|"
                + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------
# The genotype
# --------------------------------------------------------------------------------------


def _as_matrix(matrix: Any) -> tuple[tuple[int, ...], ...]:
    if isinstance(matrix, np.ndarray):
        matrix = matrix.tolist()
    if not isinstance(matrix, (list, tuple)) or not all(
        isinstance(r, (list, tuple, np.ndarray)) for r in matrix
    ):
        raise InvalidGenotype(f"nb101: matrix must be a list of rows, got {matrix!r}")
    rows = []
    for i, row in enumerate(matrix):
        vals = []
        for j, x in enumerate(list(row)):
            if isinstance(x, (bool, np.bool_)) or (
                isinstance(x, (int, np.integer)) and int(x) in (0, 1)
            ):
                vals.append(int(x))
            else:
                raise InvalidGenotype(f"nb101: matrix[{i}][{j}] must be 0 or 1, got {x!r}")
        rows.append(tuple(vals))
    return tuple(rows)


@dataclass(frozen=True)
class NB101Genotype(Genotype):
    """A cell: an upper-triangular adjacency ``matrix`` (V x V, V <= 7) and ``ops`` (V labels).

    Lists, tuples and numpy arrays are accepted and stored as tuples. Raises
    :class:`~nas.errors.InvalidGenotype` naming the bad field when the cell is outside the
    space (not square or upper triangular, more than 7 vertices, an unknown op, input and
    output not connected, more than 9 edges after pruning).
    """

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]
    space_name: ClassVar[str] = "nb101"
    _pruned: tuple[tuple[tuple[int, ...], ...], tuple[str, ...]] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        m = _as_matrix(self.matrix)
        object.__setattr__(self, "matrix", m)
        n = len(m)
        if n > MAX_VERTICES:
            raise InvalidGenotype(f"nb101: matrix has {n} vertices, at most {MAX_VERTICES}")
        if n < 2:
            raise InvalidGenotype(f"nb101: matrix needs at least 2 vertices, got {n}")
        for i, row in enumerate(m):
            if len(row) != n:
                raise InvalidGenotype(
                    f"nb101: matrix must be square; row {i} has {len(row)} entries, not {n}"
                )
            for j in range(i + 1):
                if row[j]:
                    raise InvalidGenotype(
                        f"nb101: matrix is not upper triangular: matrix[{i}][{j}] = 1 "
                        "(edges go from a lower to a higher vertex)"
                    )
        if isinstance(self.ops, str) or not isinstance(self.ops, (list, tuple)):
            raise InvalidGenotype(f"nb101: ops must be a list of op names, got {self.ops!r}")
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if len(ops) != n:
            raise InvalidGenotype(
                f"nb101: ops has {len(ops)} labels but the matrix has {n} vertices"
            )
        if ops[0] != INPUT:
            raise InvalidGenotype(f"nb101: ops[0] must be 'input', got {ops[0]!r}")
        if ops[-1] != OUTPUT:
            raise InvalidGenotype(f"nb101: ops[{n - 1}] must be 'output', got {ops[-1]!r}")
        for i, op in enumerate(ops[1:-1], start=1):
            if op not in OPS:
                raise InvalidGenotype(
                    f"nb101: ops[{i}] is an unknown op {op!r}; expected one of {list(OPS)}"
                )
        pruned = prune(m, ops)
        if pruned is None:
            raise InvalidGenotype(
                "nb101: matrix is disconnected: no path from the input to the output"
            )
        edges = sum(map(sum, pruned[0]))
        if edges > MAX_EDGES:
            raise InvalidGenotype(
                f"nb101: matrix has {edges} edges after pruning, at most {MAX_EDGES}"
            )
        object.__setattr__(self, "_pruned", pruned)

    # ---------------- views ----------------

    def pruned(self) -> NB101Genotype:
        """The same cell with the vertices off every input -> output path removed."""
        return NB101Genotype(*self._pruned)

    def spec_hash(self) -> str:
        """NAS-Bench-101's hash of the pruned cell (equal for equivalent cells)."""
        return hash_spec(*self._pruned)

    @property
    def num_edges(self) -> int:
        """Edges of the pruned cell."""
        return sum(map(sum, self._pruned[0]))

    def full(self) -> NB101Genotype:
        """The cell as a 7-vertex genotype: isolated vertices (``conv3x3-bn-relu``, pruned
        away) are inserted before the output."""
        n = len(self.matrix)
        if n == MAX_VERTICES:
            return self
        pad = MAX_VERTICES - n
        rows = [list(r[:-1]) + [0] * pad + [r[-1]] for r in self.matrix[:-1]]
        rows += [[0] * MAX_VERTICES for _ in range(pad + 1)]
        return NB101Genotype(rows, self.ops[:-1] + (CONV3X3,) * pad + (OUTPUT,))

    # ---------------- notation ----------------

    def to_str(self) -> str:
        return json.dumps(
            {"matrix": [list(r) for r in self.matrix], "ops": list(self.ops)},
            separators=(",", ":"),
        )

    def to_naslib_key(self) -> str:
        """NASLib's key: the 7x7 matrix row-major, then the 7 op ids over :data:`NASLIB_OPS`."""
        f = self.full()
        return str(
            tuple(x for r in f.matrix for x in r) + tuple(NASLIB_OPS.index(o) for o in f.ops)
        )


def from_naslib_key(key: str | Sequence[int]) -> NB101Genotype:
    """A genotype from a NASLib NB101 key (a 56-tuple, or its string)."""
    if isinstance(key, str):
        try:
            key = ast.literal_eval(key.strip())
        except (ValueError, SyntaxError):
            raise InvalidGenotype(f"nb101: {key!r} is not a NASLib key (a 56-tuple)") from None
    if not isinstance(key, (list, tuple)) or len(key) != 56:
        raise InvalidGenotype(f"nb101: a NASLib key is a 56-tuple (49 edges, 7 op ids): {key!r}")
    vals = list(key)
    ops = []
    for i, o in enumerate(vals[49:]):
        if not isinstance(o, int) or not 0 <= o < len(NASLIB_OPS):
            raise InvalidGenotype(f"nb101: NASLib op id {i} must be in 0..4, got {o!r}")
        ops.append(NASLIB_OPS[o])
    return NB101Genotype([vals[r * 7 : r * 7 + 7] for r in range(7)], ops)


def parse_nb101(text: str) -> NB101Genotype:
    """Parse ``{"matrix": [[...], ...], "ops": [...]}`` (or a NASLib 56-tuple key)."""
    text = text.strip()
    if text.startswith("("):
        return from_naslib_key(text)
    data = parse_json(
        text,
        f'nb101: {excerpt(text)} (expected {{"matrix": [[0, 1, ...], ...], "ops": [...]}})',
        InvalidGenotype,
    )
    if not isinstance(data, dict) or set(data) != {"matrix", "ops"}:
        raise InvalidGenotype(
            "nb101: expected a JSON object with exactly the keys 'matrix' and 'ops', got "
            f"{excerpt(text)}"
        )
    return NB101Genotype(data["matrix"], data["ops"])


# --------------------------------------------------------------------------------------
# Reference data
# --------------------------------------------------------------------------------------

TABLE_FILE = "nasbench/naslib_zc_nasbench101.json"


@functools.cache
def _load(path: str | None) -> tuple[tuple[NB101Genotype, Mapping[str, float]], ...]:
    p = Path(path) if path else data_path(TABLE_FILE)
    if not p.exists():
        raise DataError(
            f"NAS-Bench-101 sample not found at {p} (run `nas data fetch naslib-nb101` or set {DATA_ENV})"
        )
    try:
        table = json.loads(p.read_text())["nasbench101"]["cifar10"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{p} is not NASLib's NB101 zero-cost file: {e!r}") from None
    return tuple(
        (from_naslib_key(k), MappingProxyType({f: float(v) for f, v in rec.items()}))
        for k, rec in table.items()
    )


def load_nb101(path: str | None = None) -> list[tuple[NB101Genotype, Mapping[str, float]]]:
    """NASLib's NB101 sample on CIFAR-10: ``[(genotype, record)]``, 500 cells.

    A record holds ``val_accuracy`` (%), ``params`` (M), ``flops`` (M, NASLib's convention,
    see :func:`~nas.search_spaces.nb101.network.naslib_flops`) and zero-cost proxies.
    """
    return list(_load(path))


@functools.cache
def _index(path: str | None) -> tuple[dict[NB101Genotype, float], dict[str, list[float]]]:
    exact: dict[NB101Genotype, float] = {}
    by_hash: dict[str, list[float]] = {}
    for g, rec in _load(path):
        exact[g] = rec["val_accuracy"]
        by_hash.setdefault(g.spec_hash(), []).append(rec["val_accuracy"])
    return exact, by_hash


KNOWN = {
    # The Inception-like cell of the NAS-Bench-101 README (2,694,282 trainable parameters).
    "inception_like": {
        "matrix": [
            [0, 1, 1, 1, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        "ops": [INPUT, CONV1X1, CONV3X3, CONV3X3, CONV3X3, MAXPOOL3X3, OUTPUT],
    },
    # The smallest cell: the input projected straight to the output.
    "projection_only": {"matrix": [[0, 1], [0, 0]], "ops": [INPUT, OUTPUT]},
}


# --------------------------------------------------------------------------------------
# The space
# --------------------------------------------------------------------------------------


class NB101Space(SearchSpace):
    """NAS-Bench-101: cells of up to 7 vertices and 9 edges, 3 operations per inner vertex.

    Args:
        stem_channels: override the dataset's stem width (128 on CIFAR-10, 16 on digits).
        cells_per_stack: override the dataset's cells per stack (3 on CIFAR-10, 1 on digits).
    """

    name: ClassVar[str] = "nb101"
    description: ClassVar[str] = (
        "NAS-Bench-101 cell space (7-vertex DAGs, <= 9 edges, 3 ops), NASLib sample on CIFAR-10"
    )
    default_dataset: ClassVar[str] = "cifar10"
    datasets: ClassVar[tuple[str, ...]] = tuple(network.DATASETS)

    def __init__(
        self, stem_channels: int | None = None, cells_per_stack: int | None = None
    ) -> None:
        self.stem_channels = stem_channels
        self.cells_per_stack = cells_per_stack

    # ---------------- the 7x7 parametrisation ----------------

    def choices(self) -> list[tuple[str, int]]:
        """21 edge bits (``edge_<src>_<dst>``) then the 5 inner ops (``op_<v>``, over OPS)."""
        return [(f"edge_{s}_{d}", 2) for s, d in EDGE_SLOTS] + [
            (f"op_{v}", len(OPS)) for v in range(1, MAX_VERTICES - 1)
        ]

    def from_indices(self, indices: Sequence[int]) -> NB101Genotype:
        """The 7-vertex cell for 21 edge bits and 5 op indices (may raise InvalidGenotype)."""
        idx = [int(i) for i in indices]
        if len(idx) != len(EDGE_SLOTS) + MAX_VERTICES - 2:
            raise InvalidGenotype(f"nb101: expected 21 edge bits and 5 op indices, got {idx}")
        for (s, d), b in zip(EDGE_SLOTS, idx, strict=False):
            if b not in (0, 1):
                raise InvalidGenotype(f"nb101: edge_{s}_{d} must be 0 or 1, got {b}")
        for v, o in enumerate(idx[len(EDGE_SLOTS) :], start=1):
            if not 0 <= o < len(OPS):
                raise InvalidGenotype(f"nb101: op_{v} must be in 0..{len(OPS) - 1}, got {o}")
        m = [[0] * MAX_VERTICES for _ in range(MAX_VERTICES)]
        for (s, d), b in zip(EDGE_SLOTS, idx, strict=False):
            m[s][d] = b
        ops = (INPUT, *(OPS[o] for o in idx[len(EDGE_SLOTS) :]), OUTPUT)
        return NB101Genotype(m, ops)

    def to_indices(self, genotype: Genotype) -> list[int]:
        f = self._check(genotype).full()
        return [f.matrix[s][d] for s, d in EDGE_SLOTS] + [OPS.index(o) for o in f.ops[1:-1]]

    def _check(self, genotype: Any) -> NB101Genotype:
        if not isinstance(genotype, NB101Genotype):
            raise InvalidGenotype(f"nb101: not an NB101 genotype: {genotype!r}")
        return genotype

    @property
    def size(self) -> int:
        return NUM_UNIQUE

    def contains(self, genotype: Any) -> bool:
        # Genotypes validate on construction, so every NB101Genotype is in the space.
        return isinstance(genotype, NB101Genotype)

    # ---------------- sampling and local moves ----------------

    def _try(self, indices: Sequence[int]) -> NB101Genotype | None:
        try:
            return self.from_indices(indices)
        except InvalidGenotype:
            return None

    def sample(self, rng: np.random.Generator, max_tries: int = 10_000) -> NB101Genotype:
        """A random valid cell: every edge bit and op uniform, invalid draws rejected (as the
        NAS-Bench-101 notebook's ``random_spec``; uniform over valid 7x7 specs, not over the
        unique graphs)."""
        n_ops = MAX_VERTICES - 2
        for _ in range(max_tries):
            g = self._try(
                [*rng.integers(2, size=len(EDGE_SLOTS)), *rng.integers(len(OPS), size=n_ops)]
            )
            if g is not None:
                return g
        raise AssertionError(f"nb101: no valid cell in {max_tries} draws")  # p(valid) ~ 0.73

    def neighbours(self, genotype: Genotype) -> list[NB101Genotype]:
        """Every valid cell one edge flip or one op change away (on the 7-vertex form) that
        computes a different network (a different :meth:`NB101Genotype.spec_hash`)."""
        base = self.to_indices(genotype)
        own = self._check(genotype).spec_hash()
        out: list[NB101Genotype] = []
        for i, (_, n) in enumerate(self.choices()):
            for v in range(n):
                if v == base[i]:
                    continue
                new = list(base)
                new[i] = v
                g = self._try(new)
                if g is not None and g.spec_hash() != own:
                    out.append(g)
        return out

    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> NB101Genotype:
        """A uniformly chosen :meth:`neighbours` member: one edge flipped or one op changed,
        always valid and always a different network."""
        nbrs = self.neighbours(genotype)
        if not nbrs:  # cannot happen in NB101: removing or adding an edge always works
            raise InvalidGenotype(f"nb101: {genotype} has no valid neighbour")
        return nbrs[int(rng.integers(len(nbrs)))]

    def crossover(
        self, a: Genotype, b: Genotype, rng: np.random.Generator, max_tries: int = 100
    ) -> NB101Genotype:
        """Each edge bit and op from ``a`` or ``b``; invalid children are redrawn, and after
        ``max_tries`` failures ``a`` is returned."""
        ia, ib = self.to_indices(a), self.to_indices(b)
        for _ in range(max_tries):
            g = self._try([x if rng.random() < 0.5 else y for x, y in zip(ia, ib, strict=True)])
            if g is not None:
                return g
        return self._check(a)

    # ---------------- encodings ----------------

    def encode(self, genotype: Genotype) -> np.ndarray:
        """36 numbers: the 21 upper-triangle edge bits of the 7-vertex form (row-major), then
        a one-hot over :data:`OPS` for each of the 5 inner vertices. Smaller cells are padded
        (:meth:`NB101Genotype.full`)."""
        idx = self.to_indices(genotype)
        ne = len(EDGE_SLOTS)
        vec = np.zeros(ne + (MAX_VERTICES - 2) * len(OPS), np.float32)
        vec[:ne] = idx[:ne]
        for v, o in enumerate(idx[ne:]):
            vec[ne + v * len(OPS) + o] = 1.0
        return vec

    def decode(self, vector: Sequence[float]) -> NB101Genotype:
        """Inverse of :meth:`encode` (edge if > 0.5, argmax per op); raises InvalidGenotype
        for an invalid cell. Exact for 7-vertex genotypes; smaller ones come back padded."""
        vec = np.asarray(vector, dtype=np.float64)
        ne = len(EDGE_SLOTS)
        total = ne + (MAX_VERTICES - 2) * len(OPS)
        if vec.shape != (total,):
            raise InvalidGenotype(f"nb101: encoding must have length {total}, got {vec.shape}")
        ops = vec[ne:].reshape(MAX_VERTICES - 2, len(OPS)).argmax(axis=1)
        return self.from_indices([int(x > 0.5) for x in vec[:ne]] + [int(o) for o in ops])

    def suggest(self, trial: Any) -> NB101Genotype:
        """A cell drawn through an Optuna trial: 21 categorical edge bits and 5 categorical ops
        (the names of :meth:`choices`).

        About a quarter of such draws are invalid (disconnected, or over 9 edges after pruning). An Optuna trial
        cannot redraw a parameter, so an invalid draw raises
        :class:`~nas.errors.InvalidGenotype`; the caller tells that trial as failed (or
        pruned) and asks for a new one, which also teaches the sampler to avoid the region.
        """
        idx = [trial.suggest_categorical(name, list(range(n))) for name, n in self.choices()]
        return self.from_indices(idx)

    # ---------------- notation, graph, table ----------------

    def parse(self, text: str) -> NB101Genotype:
        return parse_nb101(text)

    def known(self) -> Mapping[str, Genotype]:
        return {k: NB101Genotype(v["matrix"], v["ops"]) for k, v in KNOWN.items()}

    def net_config(self, dataset: str | None = None) -> network.NetConfig:
        """The macro skeleton for ``dataset`` with this space's overrides."""
        cfg = network.DATASETS[self.check_dataset(dataset)]
        return network.NetConfig(
            cfg.input_shape,
            cfg.num_classes,
            self.stem_channels or cfg.stem_channels,
            self.cells_per_stack or cfg.cells_per_stack,
            cfg.num_stacks,
        )

    def to_graph(self, genotype: Genotype, dataset: str | None = None) -> ArchGraph:
        dataset = self.check_dataset(dataset)
        g = self._check(genotype)
        cfg = self.net_config(dataset)
        matrix, ops = g._pruned
        graph = network.build(matrix, ops, cfg)
        graph.meta.update(
            space=self.name,
            arch=g.to_str(),
            dataset=dataset,
            spec_hash=g.spec_hash(),
            stem_channels=cfg.stem_channels,
            cells_per_stack=cfg.cells_per_stack,
        )
        return graph

    def lookup(self, genotype: Genotype, dataset: str) -> dict[str, float]:
        """Validation accuracy (%) from NASLib's 500-cell sample on ``cifar10``.

        A genotype in the file gets its own entry; an equivalent one (same
        :meth:`~NB101Genotype.spec_hash`) gets the mean over the file's entries of that cell.
        """
        if dataset != "cifar10":
            raise UnknownName(f"nb101 table has no dataset {dataset!r}; choose 'cifar10'")
        g = self._check(genotype)
        exact, by_hash = _index(None)
        if g.full() in exact:
            return {"accuracy": exact[g.full()]}
        accs = by_hash.get(g.spec_hash())
        if not accs:
            raise UnknownName(
                f"nb101: cell {g.to_str()} is not in NASLib's 500-cell sample; "
                "train it or use a predictor"
            )
        return {"accuracy": float(np.mean(accs))}

    def check_table(self, dataset: str) -> None:
        """The table is a 500-cell sample: check it loads and answers for one of its cells."""
        first, _ = load_nb101()[0]
        self.lookup(first, dataset)
