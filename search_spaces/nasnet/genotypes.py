"""NASNet cell genotypes: the value type, its notations and the published cells.

A NASNet cell (Zoph et al., 2018) has two inputs and five blocks. Hidden state 0 is the
previous cell's output after a ReLU-1x1 conv-BN, hidden state 1 the output of the cell
before that, brought to the same shape (the numbering of the TF-slim ``nasnet_utils.py``).
Block ``b`` (``b = 0..4``) picks two earlier hidden states (``0..b+1``), applies one operation
to each and adds the results; its output is hidden state ``b + 2``. The cell output
concatenates the hidden states listed in ``concat`` (the paper: the states no block reads).

The native notation follows the DARTS ``Genotype`` layout with NASNet operation names::

    NASNet(normal=[('separable_5x5_2', 0), ('separable_3x3_2', 1), ...10 pairs],
           normal_concat=[1, 2, 3, 4, 5, 6], reduce=[...], reduce_concat=[3, 4, 5, 6])

Also accepted: JSON ``{"normal": [[op, input], ...], "normal_concat": [...], ...}`` and the
TF spec form ``{"normal": {"operations": [...], "hiddenstate_indices": [...],
"used_hiddenstates": [...]}, "reduce": {...}}`` (``'none'`` there is the identity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.search_spaces.darts.genotypes import parse_call

from nas.errors import InvalidGenotype
from nas.inputs import parse_json
from nas.space import Genotype

OPS: tuple[str, ...] = (
    "identity",
    "1x3_3x1",
    "1x7_7x1",
    "dilated_3x3_rate_2",
    "avg_pool_3x3",
    "max_pool_3x3",
    "max_pool_5x5",
    "max_pool_7x7",
    "1x1",
    "3x3",
    "separable_3x3_2",
    "separable_5x5_2",
    "separable_7x7_2",
)
"""The 13 operations of the NASNet search space (the paper's list, in its order), named as
in the TF code (``separable_kxk_2``: two stacked separable convs; ``identity`` is TF's
``'none'``)."""

TF_ALIASES = {"none": "identity"}

BLOCKS = 5
NUM_STATES = BLOCKS + 2


def derived_concat(pairs: tuple[tuple[str, int], ...]) -> tuple[int, ...]:
    """The hidden states no block reads: the paper's rule for the cell output."""
    used = {i for _, i in pairs}
    return tuple(s for s in range(NUM_STATES) if s not in used)


def _check_cell(field: str, cell: Any) -> None:
    if not isinstance(cell, tuple) or len(cell) != 2 * BLOCKS:
        raise InvalidGenotype(
            f"nasnet: {field} must hold {2 * BLOCKS} (op, input) pairs, two per block, got {cell!r}"
        )
    for k, pair in enumerate(cell):
        block = k // 2
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidGenotype(f"nasnet: {field}[{k}] must be an (op, input) pair, got {pair!r}")
        op, src = pair
        if op not in OPS:
            raise InvalidGenotype(
                f"nasnet: {field}[{k}] has op {op!r}; expected one of {list(OPS)}"
            )
        if not isinstance(src, int) or isinstance(src, bool) or not 0 <= src < block + 2:
            raise InvalidGenotype(
                f"nasnet: {field}[{k}] (block {block}) reads hidden state {src!r}; block {block} "
                f"may read states 0..{block + 1}"
            )


def _check_concat(field: str, concat: Any, cell: tuple[tuple[str, int], ...]) -> None:
    if (
        not isinstance(concat, tuple)
        or not concat
        or list(concat) != sorted(set(concat))
        or not all(isinstance(s, int) and 0 <= s < NUM_STATES for s in concat)
    ):
        raise InvalidGenotype(
            f"nasnet: {field} must be a non-empty increasing list of hidden states in "
            f"0..{NUM_STATES - 1}, got {concat!r}"
        )
    used = {i for _, i in cell}
    for s in range(NUM_STATES):
        if s not in used and s not in concat:
            raise InvalidGenotype(
                f"nasnet: hidden state {s} of the {field.split('_')[0]} cell is neither read by "
                f"a block nor in {field}; add it to {field}"
            )


@dataclass(frozen=True)
class NasnetGenotype(Genotype):
    """A NASNet normal + reduction cell.

    Attributes:
        normal: ten ``(op, input)`` pairs, two per block, in block order.
        reduce: the same for the reduction cell.
        normal_concat: the hidden states concatenated into the cell output; ``None`` means
            the paper's rule (every state no block reads).
        reduce_concat: likewise.
        published: the name of a published network these cells come from (``AmoebaNet-A``);
            its skeleton (:data:`PUBLISHED_SKELETONS`: cells per stack ``N``, filters ``F``)
            is then the default on each dataset, so the name builds the published network.
    """

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...] | None = None
    reduce_concat: tuple[int, ...] | None = None
    published: str | None = None
    space_name: ClassVar[str] = "nasnet"

    def __post_init__(self) -> None:
        if self.published is not None and self.published not in PUBLISHED_SKELETONS:
            raise InvalidGenotype(
                f"nasnet: published={self.published!r} is not one of {sorted(PUBLISHED_SKELETONS)}"
            )
        _check_cell("normal", self.normal)
        _check_cell("reduce", self.reduce)
        for field, cell in (("normal_concat", self.normal), ("reduce_concat", self.reduce)):
            value = getattr(self, field)
            if value is None:
                object.__setattr__(self, field, derived_concat(cell))
            elif isinstance(value, list):
                object.__setattr__(self, field, tuple(value))
            _check_concat(field, getattr(self, field), cell)

    def to_str(self) -> str:
        def cell(pairs):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in pairs) + "]"

        tail = f", published={self.published!r}" if self.published else ""
        return (
            f"NASNet(normal={cell(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={cell(self.reduce)}, reduce_concat={list(self.reduce_concat)}{tail})"
        )

    def to_compact(self) -> dict[str, Any]:
        return {
            "normal": [[op, i] for op, i in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, i] for op, i in self.reduce],
            "reduce_concat": list(self.reduce_concat),
            **({"published": self.published} if self.published else {}),
        }


def _pairs(field: str, value: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, (list, tuple)):
        raise InvalidGenotype(f"nasnet: {field} must be a list of (op, input) pairs")
    out = []
    for k, p in enumerate(value):
        if not (isinstance(p, (list, tuple)) and len(p) == 2):
            raise InvalidGenotype(f"nasnet: {field}[{k}] must be an (op, input) pair, got {p!r}")
        out.append((TF_ALIASES.get(p[0], p[0]), p[1]))
    return tuple(out)


def _from_tf_spec(field: str, spec: Any) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    try:
        ops = list(spec["operations"])
        idx = list(spec["hiddenstate_indices"])
        used = list(spec["used_hiddenstates"])
    except (KeyError, TypeError):
        raise InvalidGenotype(
            f"nasnet: {field} in TF form needs operations, hiddenstate_indices and "
            "used_hiddenstates"
        ) from None
    if len(ops) != len(idx) or len(used) != NUM_STATES:
        raise InvalidGenotype(
            f"nasnet: {field}: {len(ops)} operations, {len(idx)} indices and {len(used)} "
            f"used_hiddenstates; expected {2 * BLOCKS}, {2 * BLOCKS} and {NUM_STATES}"
        )
    pairs = _pairs(field, list(zip(ops, idx, strict=True)))
    concat = tuple(s for s, u in enumerate(used) if not u)
    return pairs, concat


def _from_fields(fields: dict[str, Any]) -> NasnetGenotype:
    extra = sorted(
        set(fields) - {"normal", "reduce", "normal_concat", "reduce_concat", "published"}
    )
    if extra:
        raise InvalidGenotype(f"nasnet: unknown genotype field(s) {extra}")
    cells: dict[str, Any] = {}
    for name in ("normal", "reduce"):
        if name not in fields:
            raise InvalidGenotype(f"nasnet: genotype lacks the {name!r} cell")
        value = fields[name]
        concat = fields.get(f"{name}_concat")
        if isinstance(value, dict):
            pairs, tf_concat = _from_tf_spec(name, value)
            concat = tf_concat if concat is None else concat
        else:
            pairs = _pairs(name, value)
        if concat is not None:
            if not isinstance(concat, (list, tuple)):
                raise InvalidGenotype(f"nasnet: {name}_concat must be a list, got {concat!r}")
            concat = tuple(concat)
        cells[name] = pairs
        cells[f"{name}_concat"] = concat
    if fields.get("published") is not None:
        if not isinstance(fields["published"], str):
            raise InvalidGenotype("nasnet: published must be a network's name")
        cells["published"] = fields["published"]
    return NasnetGenotype(**cells)


def parse_nasnet(text: str) -> NasnetGenotype:
    """A NASNet genotype from the ``NASNet(...)`` string or one of the JSON forms."""
    if not isinstance(text, str):
        raise InvalidGenotype(f"nasnet: expected a genotype string, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise InvalidGenotype("nasnet: empty genotype string")
    if s.startswith("{"):
        data = parse_json(s, "nasnet: genotype", InvalidGenotype)
        if not isinstance(data, dict):
            raise InvalidGenotype("nasnet: genotype JSON must be an object")
        return _from_fields(data)
    return _from_fields(parse_call("nasnet", s))


# --------------------------------------------------------------------------------------
# Published cells, transcribed from the authors' TF specs (operations, hiddenstate_indices,
# used_hiddenstates): NASNet-A from tensorflow/models research/slim/nets/nasnet/nasnet_utils.py,
# AmoebaNet-A from tensorflow/tpu models/official/amoeba_net/model_specs.py ('amoeba_net_a').
# --------------------------------------------------------------------------------------

TF_SPECS: dict[str, dict[str, dict[str, list]]] = {
    "NASNet-A": {
        "normal": {
            "operations": [
                "separable_5x5_2",
                "separable_3x3_2",
                "separable_5x5_2",
                "separable_3x3_2",
                "avg_pool_3x3",
                "none",
                "avg_pool_3x3",
                "avg_pool_3x3",
                "separable_3x3_2",
                "none",
            ],
            "hiddenstate_indices": [0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
            "used_hiddenstates": [1, 0, 0, 0, 0, 0, 0],
        },
        "reduce": {
            "operations": [
                "separable_5x5_2",
                "separable_7x7_2",
                "max_pool_3x3",
                "separable_7x7_2",
                "avg_pool_3x3",
                "separable_5x5_2",
                "none",
                "avg_pool_3x3",
                "separable_3x3_2",
                "max_pool_3x3",
            ],
            "hiddenstate_indices": [0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
            "used_hiddenstates": [1, 1, 1, 0, 0, 0, 0],
        },
    },
    "AmoebaNet-A": {
        "normal": {
            "operations": [
                "avg_pool_3x3",
                "max_pool_3x3",
                "separable_3x3_2",
                "none",
                "none",
                "avg_pool_3x3",
                "separable_3x3_2",
                "separable_5x5_2",
                "avg_pool_3x3",
                "separable_3x3_2",
            ],
            "hiddenstate_indices": [0, 0, 1, 1, 0, 1, 0, 2, 5, 0],
            "used_hiddenstates": [1, 0, 1, 0, 0, 1, 0],
        },
        "reduce": {
            "operations": [
                "separable_3x3_2",
                "avg_pool_3x3",
                "max_pool_3x3",
                "separable_7x7_2",
                "max_pool_3x3",
                "max_pool_3x3",
                "separable_3x3_2",
                "1x7_7x1",
                "avg_pool_3x3",
                "separable_7x7_2",
            ],
            "hiddenstate_indices": [1, 0, 0, 2, 1, 0, 4, 0, 1, 0],
            "used_hiddenstates": [1, 1, 0, 0, 0, 0, 0],
        },
    },
}


# The published networks' skeletons: NASNet-A CIFAR (N=6, F=32: 3.3M parameters) and mobile
# ImageNet (N=4, F=44: 5.3M, 564M multiply-adds), Zoph et al. 2018 Tables 1-2; AmoebaNet-A
# CIFAR (N=6, F=36: 3.2M) and mobile ImageNet (N=4, F=50: 5.1M, 555M), Real et al. 2019
# Tables 2-3.
PUBLISHED_SKELETONS: dict[str, dict[str, dict[str, int]]] = {
    "NASNet-A": {
        "cifar10": {"N": 6, "F": 32},
        "cifar100": {"N": 6, "F": 32},
        "imagenet": {"N": 4, "F": 44},
    },
    "AmoebaNet-A": {
        "cifar10": {"N": 6, "F": 36},
        "cifar100": {"N": 6, "F": 36},
        "imagenet": {"N": 4, "F": 50},
    },
}


def known_genotypes() -> dict[str, NasnetGenotype]:
    """The published cells by name, each tagged with its network (and so its skeleton)."""
    out = {}
    for name, spec in TF_SPECS.items():
        out[name] = parse_nasnet(json.dumps({**spec, "published": name}))
    return out
