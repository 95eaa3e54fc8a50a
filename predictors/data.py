"""Labelled architecture data for predictors: ``(IR graph, accuracy)`` from the shared tables.

A SPEC names a benchmark, optionally a dataset and a sample size: ``bench[:dataset][:n]``,
for example ``nb201:cifar10:100``, ``nb201:100``, ``nb101``, ``nbmacro``. Benchmarks:

=========  ==================================  =======  ==============================
name       datasets                            archs    target
=========  ==================================  =======  ==============================
nb201      cifar10, cifar100, ImageNet16-120   15,625   test accuracy, 200 epochs
nb101      cifar10                             500      NASLib's validation accuracy
nb301      cifar10                             500      NASLib's validation accuracy
nbmacro    cifar10                             6,561    mean test accuracy of 3 runs
gpt        stdlib                              500      minus supernet bits per byte
=========  ==================================  =======  ==============================

Graphs are :class:`~nas.predictors.features.ArchRef` values, expanded into the IR only when a
predictor needs a graph its feature cache does not hold.

Example:
    >>> train, test = load_split(["nb201:cifar10:100"], "nb201:cifar10:50", seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from nas.predictors.features import ArchRef

from nas.errors import ConfigError, UnknownName

BENCHMARKS: dict[str, tuple[str, ...]] = {
    "nb201": ("cifar10", "cifar100", "ImageNet16-120"),
    "nb101": ("cifar10",),
    "nb301": ("cifar10",),
    "nbmacro": ("cifar10",),
    "gpt": ("stdlib",),
}
GPT_TABLE = "benchmarks/results/gpt_supernet_table.json"
"""gpt children scored by a trained supernet (``python -m benchmarks.gpt_table``); their
target is minus the bits per byte, so that larger is better as for accuracies."""


@dataclass(frozen=True)
class Spec:
    """A parsed SPEC ``bench[:dataset][:n]``."""

    bench: str
    dataset: str
    n: int | None = None

    def __str__(self) -> str:
        return f"{self.bench}:{self.dataset}" + (f":{self.n}" if self.n is not None else "")


def parse_spec(text: str) -> Spec:
    """Parse ``bench[:dataset][:n]`` (raises :class:`ConfigError` / :class:`UnknownName`)."""
    parts = [p.strip() for p in text.strip().split(":")]
    if not parts or not parts[0]:
        raise ConfigError(f"empty data SPEC {text!r}; expected bench[:dataset][:n]")
    bench = parts[0]
    if bench not in BENCHMARKS:
        raise UnknownName(
            f"unknown benchmark {bench!r} in {text!r}; choose one of {list(BENCHMARKS)}"
        )
    rest = parts[1:]
    n = None
    if rest and rest[-1].isdigit():
        n = int(rest.pop())
        if n <= 0:
            raise ConfigError(f"sample size in {text!r} must be positive")
    if len(rest) > 1:
        raise ConfigError(f"cannot read SPEC {text!r}; expected bench[:dataset][:n]")
    dataset = rest[0] if rest else BENCHMARKS[bench][0]
    if dataset not in BENCHMARKS[bench]:
        raise UnknownName(
            f"benchmark {bench!r} has no dataset {dataset!r}; choose one of {list(BENCHMARKS[bench])}"
        )
    return Spec(bench, dataset, n)


@functools.cache
def _table(bench: str, dataset: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Every labelled architecture of a benchmark: (native strings, accuracies in %)."""
    if bench == "nb201":
        from nas.search_spaces.nb201.space import load_table

        t = load_table()
        archs = tuple(sorted(t))
        return archs, np.array([float(t[a][dataset]) for a in archs])
    if bench == "nb101":
        from nas.search_spaces.nb101.space import load_nb101

        rows = load_nb101()
        return tuple(g.to_str() for g, _ in rows), np.array([r["val_accuracy"] for _, r in rows])
    if bench == "nb301":
        from nas.search_spaces.darts.space import load_nb301

        rows = load_nb301()
        return tuple(g.to_str() for g, _ in rows), np.array([r["val_accuracy"] for _, r in rows])
    if bench == "nbmacro":
        from nas.search_spaces.nbmacro.space import load_macro

        rows = load_macro()
        return tuple(g.to_str() for g, _ in rows), np.array([r["mean_acc"] for _, r in rows])
    if bench == "gpt":
        return _gpt_table()
    raise UnknownName(f"unknown benchmark {bench!r}")  # pragma: no cover - parse_spec checks


def _gpt_table() -> tuple[tuple[str, ...], np.ndarray]:
    import json
    from pathlib import Path

    from nas.errors import DataError

    path = Path(__file__).resolve().parent.parent / GPT_TABLE
    if not path.exists():
        raise DataError(f"{path} is missing: make it with python -m benchmarks.gpt_table")
    rows = json.loads(path.read_text())["archs"]
    return tuple(a for a, _ in rows), -np.array([v for _, v in rows], np.float64)


@dataclass(frozen=True)
class LabelledSet:
    """Architectures with accuracies.

    Attributes:
        graphs: one :class:`ArchRef` per architecture (accepted by every predictor).
        y: accuracies in percent.
        groups: the benchmark each architecture comes from (ranking losses compare within
            a group only; accuracy scales differ across benchmarks).
    """

    graphs: tuple[ArchRef, ...]
    y: np.ndarray
    groups: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.graphs)

    @staticmethod
    def concat(sets: Sequence[LabelledSet]) -> LabelledSet:
        return LabelledSet(
            tuple(g for s in sets for g in s.graphs),
            np.concatenate([s.y for s in sets]) if sets else np.zeros(0),
            tuple(x for s in sets for x in s.groups),
        )

    def subset(self, idx: Sequence[int]) -> LabelledSet:
        return LabelledSet(
            tuple(self.graphs[i] for i in idx),
            self.y[np.asarray(idx, int)] if len(idx) else np.zeros(0),
            tuple(self.groups[i] for i in idx),
        )


def _spec_seed(seed: int, spec: Spec) -> int:
    return seed * 1_000_003 + sum(ord(c) for c in spec.bench)


def load_split(
    train: Sequence[str | Spec],
    test: str | Spec,
    seed: int = 0,
    exclude: Mapping[str, set[str]] | None = None,
) -> tuple[LabelledSet, LabelledSet]:
    """Training and test sets for SPECs; disjoint (by architecture) within a benchmark.

    Each benchmark's architectures are shuffled once with ``seed``; a training SPEC takes the
    first ``n`` of them, and a test SPEC of the same benchmark draws from the rest (the
    same architecture on another dataset counts as seen). ``exclude`` (benchmark -> native
    strings, e.g. what a pretrained predictor was trained on: :func:`train_archs`) is left
    out of both.
    """
    train_specs = [s if isinstance(s, Spec) else parse_spec(s) for s in train]
    test_spec = test if isinstance(test, Spec) else parse_spec(test)
    used = {k: set(v) for k, v in (exclude or {}).items()}
    parts = _draw_train(train_specs, seed, used)
    archs, y = _table(test_spec.bench, test_spec.dataset)
    order = np.random.default_rng(_spec_seed(seed, test_spec) + 1).permutation(len(archs))
    taken = used.get(test_spec.bench, set())
    rest = [i for i in order if archs[i] not in taken]
    n = len(rest) if test_spec.n is None else test_spec.n
    if n > len(rest) or n == 0:
        raise ConfigError(
            f"test SPEC {test_spec} asks for {n} architectures; {len(rest)} are left "
            "after removing the training architectures"
        )
    return LabelledSet.concat(parts), _make(test_spec, archs, y, rest[:n])


def _draw_train(specs: Sequence[Spec], seed: int, used: dict[str, set[str]]) -> list[LabelledSet]:
    """The training part of :func:`load_split`; records what it takes in ``used``."""
    parts = []
    for spec in specs:
        archs, y = _table(spec.bench, spec.dataset)
        order = np.random.default_rng(_spec_seed(seed, spec)).permutation(len(archs))
        taken = used.setdefault(spec.bench, set())
        order = [i for i in order if archs[i] not in taken]
        n = len(order) if spec.n is None else spec.n
        if n > len(order):
            raise ConfigError(f"{spec} asks for {n} architectures; {len(order)} are available")
        idx = order[:n]
        taken.update(archs[i] for i in idx)
        parts.append(_make(spec, archs, y, idx))
    return parts


def train_archs(train: Sequence[str | Spec], seed: int) -> dict[str, set[str]]:
    """Benchmark -> the architectures :func:`load_split` draws for the training SPECs."""
    used: dict[str, set[str]] = {}
    _draw_train([s if isinstance(s, Spec) else parse_spec(s) for s in train], seed, used)
    return used


def load_spec(spec: str | Spec, seed: int = 0) -> LabelledSet:
    """One SPEC on its own (``n`` drawn with ``seed``)."""
    s = spec if isinstance(spec, Spec) else parse_spec(spec)
    archs, y = _table(s.bench, s.dataset)
    order = np.random.default_rng(_spec_seed(seed, s)).permutation(len(archs))
    n = len(order) if s.n is None else s.n
    if n > len(order):
        raise ConfigError(f"{s} asks for {n} architectures; {len(order)} are available")
    return _make(s, archs, y, list(order[:n]))


def _make(spec: Spec, archs: Sequence[str], y: np.ndarray, idx: Sequence[int]) -> LabelledSet:
    return LabelledSet(
        tuple(ArchRef(spec.bench, archs[i], spec.dataset) for i in idx),
        np.asarray([y[i] for i in idx], np.float64),
        tuple(spec.bench for _ in idx),
    )
