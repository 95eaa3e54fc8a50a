"""DARTS cell genotypes: the value type, its notations and the published cells.

A DARTS cell has two inputs (0: the output of the cell two back, ``c_{k-2}``; 1: the output
of the previous cell, ``c_{k-1}``) and four intermediate nodes (2..5). Each intermediate node
sums two operations, each applied to an earlier node; the cell output concatenates nodes
2..5. A genotype lists the eight ``(op, input)`` pairs of the normal cell and of the
reduction cell, two per node, in the notation of the DARTS code::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ...], reduce_concat=[2, 3, 4, 5])

Accepted notations (:func:`parse_darts`): that ``Genotype(...)`` string (``range(2, 6)`` and the
nested per-node pairs of the AutoDL code are accepted too), a JSON object
``{"normal": [["sep_conv_3x3", 0], ...], "reduce": [...]}`` (concat lists optional), and the
NASLib / NAS-Bench-301 compact key ``[[(input, op_id) x 8], [(input, op_id) x 8]]`` with
op ids over :data:`NB301_OPS`.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nas.errors import InvalidGenotype
from nas.inputs import parse_json
from nas.space import Genotype

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The eight DARTS operations in the order of the DARTS code (the supernet's mixed op)."""

CELL_OPS: tuple[str, ...] = PRIMITIVES[1:]
"""The operations a derived cell may use: DARTS never selects ``none`` when it derives a cell.
This is also NASLib's NAS-Bench-301 op-id order (``max_pool_3x3`` = 0 ... ``dil_conv_5x5`` = 6)."""

NB301_OPS = CELL_OPS

STEPS = 4
CONCAT: tuple[int, ...] = (2, 3, 4, 5)


def _check_cell(space: str, field: str, cell: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(cell, tuple) or len(cell) != 2 * STEPS:
        raise InvalidGenotype(
            f"{space}: {field} must hold {2 * STEPS} (op, input) pairs, two per node, got {cell!r}"
        )
    for k, pair in enumerate(cell):
        node = 2 + k // 2
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidGenotype(
                f"{space}: {field}[{k}] must be an (op, input) pair, got {pair!r}"
            )
        op, src = pair
        if op not in CELL_OPS:
            raise InvalidGenotype(
                f"{space}: {field}[{k}] has op {op!r}; a derived DARTS cell uses one of "
                f"{list(CELL_OPS)}"
            )
        if not isinstance(src, int) or isinstance(src, bool) or not 0 <= src < node:
            raise InvalidGenotype(
                f"{space}: {field}[{k}] (node {node}) reads input {src!r}; node {node} may read "
                f"nodes 0..{node - 1}"
            )
    for i in range(STEPS):
        if cell[2 * i][1] == cell[2 * i + 1][1]:
            raise InvalidGenotype(
                f"{space}: {field} node {i + 2} reads node {cell[2 * i][1]} twice; "
                "the two inputs of a node must differ"
            )
    return cell


@dataclass(frozen=True)
class DartsGenotype(Genotype):
    """A DARTS normal + reduction cell.

    Attributes:
        normal: eight ``(op, input)`` pairs, two per intermediate node 2..5, in order.
        reduce: the same for the reduction cell.
        normal_concat: the concatenated nodes; always ``(2, 3, 4, 5)`` in this space.
        reduce_concat: likewise.
    """

    normal: tuple[tuple[str, int], ...]
    reduce: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...] = CONCAT
    reduce_concat: tuple[int, ...] = CONCAT
    space_name: ClassVar[str] = "darts"

    def __post_init__(self) -> None:
        name = self.space_name
        _check_cell(name, "normal", self.normal)
        _check_cell(name, "reduce", self.reduce)
        for field in ("normal_concat", "reduce_concat"):
            if tuple(getattr(self, field)) != CONCAT:
                raise InvalidGenotype(
                    f"{name}: {field} must be [2, 3, 4, 5] (the cell concatenates its four "
                    f"intermediate nodes), got {getattr(self, field)!r}"
                )

    def to_str(self) -> str:
        def cell(pairs):
            return "[" + ", ".join(f"({op!r}, {i})" for op, i in pairs) + "]"

        return (
            f"Genotype(normal={cell(self.normal)}, normal_concat={list(self.normal_concat)}, "
            f"reduce={cell(self.reduce)}, reduce_concat={list(self.reduce_concat)})"
        )

    def to_compact(self) -> dict[str, Any]:
        """The compact JSON form ``{"normal": [[op, input], ...], "reduce": [...]}``."""
        return {
            "normal": [[op, i] for op, i in self.normal],
            "reduce": [[op, i] for op, i in self.reduce],
        }

    def to_naslib(self) -> str:
        """The NASLib / NAS-Bench-301 compact key ``[[(input, op_id), ...], [...]]``."""
        cells = [
            "[" + ", ".join(f"({i}, {NB301_OPS.index(op)})" for op, i in c) + "]"
            for c in (self.normal, self.reduce)
        ]
        return "[" + ", ".join(cells) + "]"

    def canonical(self) -> DartsGenotype:
        """The same cells with each node's two pairs sorted by input (same network)."""

        def sort(cell):
            out: list[tuple[str, int]] = []
            for i in range(STEPS):
                out.extend(sorted(cell[2 * i : 2 * i + 2], key=lambda p: (p[1], p[0])))
            return tuple(out)

        return type(self)(sort(self.normal), sort(self.reduce))


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def _flatten_pairs(space: str, field: str, value: Any) -> tuple[tuple[Any, Any], ...]:
    """Pairs as a flat tuple; accepts nested per-node pairs ``((op, i), (op, j))``."""
    if not isinstance(value, (list, tuple)):
        raise InvalidGenotype(f"{space}: {field} must be a list of (op, input) pairs")
    out: list[tuple[Any, Any]] = []
    for item in value:
        if (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and all(isinstance(x, (list, tuple)) for x in item)
        ):
            out.extend(tuple(x) for x in item)
        elif isinstance(item, (list, tuple)):
            out.append(tuple(item))
        else:
            raise InvalidGenotype(f"{space}: {field} entry {item!r} is not an (op, input) pair")
    return tuple(out)


def _literal(space: str, node: ast.AST, text: str) -> Any:
    """A Python literal, or ``range(a, b)`` / ``list(range(a, b))``, from an AST node."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "list" and len(node.args) == 1 and not node.keywords:
            return _literal(space, node.args[0], text)
        if node.func.id == "range" and not node.keywords and 1 <= len(node.args) <= 3:
            args = [_literal(space, a, text) for a in node.args]
            if all(isinstance(a, int) for a in args):
                return list(range(*args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise InvalidGenotype(
            f"{space}: cannot read {ast.get_source_segment(text, node) or '?'!r}; expected a "
            "list of (op, input) pairs or a list/range of node ids"
        ) from None


def parse_call(space: str, text: str) -> dict[str, Any]:
    """The keyword arguments of a ``Name(normal=[...], normal_concat=[...], ...)`` string.

    Only literals and ``range(...)`` are read (nothing is evaluated). Returns the keywords
    as Python values; the caller validates them.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise InvalidGenotype(
            f"{space}: {text!r} is not a Genotype(...) expression: {e.msg}"
        ) from None
    call = tree.body
    if isinstance(call, ast.Name):
        raise InvalidGenotype(
            f"{space}: {text.strip()!r} is neither a known architecture name nor a "
            "Genotype(...) expression"
        )
    if not isinstance(call, ast.Call) or call.args:
        raise InvalidGenotype(
            f"{space}: expected Genotype(normal=[...], normal_concat=[...], reduce=[...], "
            f"reduce_concat=[...]), got {text!r}"
        )
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise InvalidGenotype(f"{space}: '**' is not allowed in {text!r}")
        out[kw.arg] = _literal(space, kw.value, text)
    return out


def _from_fields(
    cls: type[DartsGenotype], fields: dict[str, Any], ignore: Sequence[str] = ()
) -> DartsGenotype:
    space = cls.space_name
    known = {"normal", "reduce", "normal_concat", "reduce_concat", *ignore}
    extra = sorted(set(fields) - known)
    if extra:
        raise InvalidGenotype(f"{space}: unknown genotype field(s) {extra}")
    for f in ("normal", "reduce"):
        if f not in fields:
            raise InvalidGenotype(f"{space}: genotype lacks the {f!r} cell")
    concat = {}
    for f in ("normal_concat", "reduce_concat"):
        v = fields.get(f, CONCAT)
        if not isinstance(v, (list, tuple)):
            raise InvalidGenotype(f"{space}: {f} must be a list of node ids, got {v!r}")
        concat[f] = tuple(v)
    return cls(
        _flatten_pairs(space, "normal", fields["normal"]),
        _flatten_pairs(space, "reduce", fields["reduce"]),
        **concat,
    )


def _from_naslib(cls: type[DartsGenotype], value: Any) -> DartsGenotype:
    space = cls.space_name
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise InvalidGenotype(f"{space}: a NASLib key holds two cells, got {value!r}")
    cells = []
    for name, cell in zip(("normal", "reduce"), value, strict=True):
        if not isinstance(cell, (list, tuple)):
            raise InvalidGenotype(f"{space}: NASLib {name} cell must be a list, got {cell!r}")
        pairs = []
        for k, pair in enumerate(cell):
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise InvalidGenotype(f"{space}: NASLib {name}[{k}] must be (input, op_id)")
            src, op = pair
            if not isinstance(op, int) or not 0 <= op < len(NB301_OPS):
                raise InvalidGenotype(
                    f"{space}: NASLib {name}[{k}] has op id {op!r}; ids run 0..6 over "
                    f"{list(NB301_OPS)}"
                )
            pairs.append((NB301_OPS[op], src))
        cells.append(tuple(pairs))
    return cls(cells[0], cells[1])


def parse_darts(text: str, cls: type[DartsGenotype] = DartsGenotype) -> DartsGenotype:
    """A genotype from any accepted notation (see the module docstring)."""
    space = cls.space_name
    if not isinstance(text, str):
        raise InvalidGenotype(f"{space}: expected a genotype string, got {type(text).__name__}")
    s = text.strip()
    if not s:
        raise InvalidGenotype(f"{space}: empty genotype string")
    if s.startswith("{"):
        data = parse_json(s, f"{space}: genotype", InvalidGenotype)
        if not isinstance(data, dict):
            raise InvalidGenotype(f"{space}: genotype JSON must be an object")
        return _from_fields(cls, data)
    if s.startswith("["):
        try:
            value = ast.literal_eval(s)
        except (ValueError, SyntaxError):
            raise InvalidGenotype(
                f"{space}: {text!r} is not a NASLib key [[(input, op_id) x 8], [... x 8]]"
            ) from None
        return _from_naslib(cls, value)
    return _from_fields(cls, parse_call(space, s), ignore=("connectN", "connects"))


# --------------------------------------------------------------------------------------
# Published cells (copied as data from the authors' repositories, see KNOWN_SOURCES)
# --------------------------------------------------------------------------------------

KNOWN: dict[str, str] = {
    "DARTS_V1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])",
    "DARTS_V2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])",
    "PC_DARTS_cifar": "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)], normal_concat=range(2, 6), reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)], reduce_concat=range(2, 6))",
    "PC_DARTS_image": "Genotype(normal=[('skip_connect', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 0), ('skip_connect', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_5x5', 2), ('max_pool_3x3', 1), ('sep_conv_3x3', 2), ('sep_conv_3x3', 1), ('sep_conv_5x5', 0), ('sep_conv_3x3', 3)], reduce_concat=range(2, 6))",
    "PDARTS": "Genotype(normal=[('skip_connect', 0), ('dil_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 3), ('sep_conv_3x3', 0), ('dil_conv_5x5', 4)], normal_concat=range(2, 6), reduce=[('avg_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('dil_conv_5x5', 2), ('max_pool_3x3', 0), ('dil_conv_3x3', 1), ('dil_conv_3x3', 1), ('dil_conv_5x5', 3)], reduce_concat=range(2, 6))",
    "GDAS_V1": "Genotype(normal=[(('skip_connect', 0), ('skip_connect', 1)), (('skip_connect', 0), ('sep_conv_5x5', 2)), (('sep_conv_3x3', 3), ('skip_connect', 0)), (('sep_conv_5x5', 4), ('sep_conv_3x3', 3))], normal_concat=[2, 3, 4, 5], reduce=[(('sep_conv_5x5', 0), ('sep_conv_3x3', 1)), (('sep_conv_5x5', 2), ('sep_conv_5x5', 1)), (('dil_conv_5x5', 2), ('sep_conv_3x3', 1)), (('sep_conv_5x5', 0), ('sep_conv_5x5', 1))], reduce_concat=[2, 3, 4, 5])",
}
"""Published DARTS-space cells, each in its authors' own notation."""

KNOWN_SOURCES: dict[str, str] = {
    "DARTS_V1": "quark0/darts cnn/genotypes.py (first-order DARTS)",
    "DARTS_V2": "quark0/darts cnn/genotypes.py (second-order DARTS, the paper's cell)",
    "PC_DARTS_cifar": "yuhuixu1993/PC-DARTS genotypes.py",
    "PC_DARTS_image": "yuhuixu1993/PC-DARTS genotypes.py (searched on ImageNet)",
    "PDARTS": "chenxin061/pdarts genotypes.py",
    "GDAS_V1": "D-X-Y/AutoDL-Projects xautodl/nas_infer_model/DXYs/genotypes.py",
}
KNOWN["DARTS"] = KNOWN["DARTS_V2"]
KNOWN_SOURCES["DARTS"] = "alias of DARTS_V2, as in the DARTS code"
