"""NAS-Bench-101 space: exact counts against published numbers, pruning, notation, moves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from nas.search_spaces import get_space
from nas.search_spaces.nb101 import (
    NB101Genotype,
    NB101Space,
    compute_vertex_channels,
    from_naslib_key,
    hash_spec,
    load_nb101,
    naslib_flops,
    parse_nb101,
    prune,
)
from nas.search_spaces.nb101.space import TABLE_FILE

from nas.errors import DataError, InvalidGenotype, UnknownName
from tests.conftest import require_data

C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"


@pytest.fixture(scope="module")
def space() -> NB101Space:
    return NB101Space()


@pytest.fixture(scope="module")
def table():
    return load_nb101(str(require_data(TABLE_FILE)))


# ----------------------------------------------------------------- published numbers


def test_all_500_param_counts_and_naslib_flops_match(space, table):
    assert len(table) == 500
    wrong_params, wrong_flops = [], []
    for g, rec in table:
        graph = space.to_graph(g, "cifar10")
        if round(graph.params() / 1e6, 6) != rec["params"]:
            wrong_params.append((g.to_str(), graph.params(), rec["params"]))
        if round(naslib_flops(graph) / 1e6, 6) != rec["flops"]:
            wrong_flops.append((g.to_str(), naslib_flops(graph), rec["flops"]))
    assert wrong_params == []
    assert wrong_flops == []


def test_projection_only_network_counts(space):
    # Stem 3712 + cells 49,920 + 165,376 + 658,432 + dense 5,130.
    g = space.known()["projection_only"]
    graph = space.to_graph(g)
    assert graph.params() == 882_570
    assert naslib_flops(graph) == 140_416_000
    # Platform convention: conv + dense weight MACs only.
    assert graph.flops() == 137_761_792


def test_readme_inception_cell_matches_the_dataset(space):
    # NASBench.ipynb: querying this cell returns trainable_parameters 2694282 and the
    # isomorphic adjacency stored in the dataset.
    query = space.known()["inception_like"]
    stored = NB101Genotype(
        [
            [0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        ["input", C3, C1, MP, C3, C3, "output"],
    )
    assert space.to_graph(query).params() == 2_694_282
    assert space.to_graph(stored).params() == 2_694_282
    assert query.spec_hash() == stored.spec_hash()
    assert query != stored


def test_lookup(space, table):
    g, rec = table[0]
    assert space.lookup(g, "cifar10") == {"accuracy": rec["val_accuracy"]}
    # The same cell in its pruned form is found through its hash.
    assert space.lookup(g.pruned(), "cifar10")["accuracy"] == pytest.approx(
        np.mean([r["val_accuracy"] for h, r in table if h.spec_hash() == g.spec_hash()])
    )
    with pytest.raises(UnknownName, match="cifar100"):
        space.lookup(g, "cifar100")
    seen = {h.spec_hash() for h, _ in table}
    rng = np.random.default_rng(3)
    missing = next(s for s in (space.sample(rng) for _ in range(1000)) if s.spec_hash() not in seen)
    with pytest.raises(UnknownName, match="not in NASLib"):
        space.lookup(missing, "cifar10")


def test_missing_table_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_nb101(str(tmp_path / "nope.json"))


# ----------------------------------------------------------------- network structure


@pytest.mark.parametrize(
    "matrix, cin, cout, expected",
    [
        ([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], 8, 16, [8, 16, 16, 16]),
        ([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], 16, 8, [16, 8, 8, 8]),
        ([[0, 1], [0, 0]], 5, 1, [5, 1]),
        ([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], 8, 15, [8, 8, 7, 15]),
        (
            [[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5],
            8,
            8,
            [8, 3, 3, 2, 8],
        ),
        (
            [[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0] * 5],
            8,
            9,
            [8, 5, 5, 4, 9],
        ),
        (
            [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0] * 5],
            8,
            15,
            [8, 8, 7, 7, 15],
        ),
    ],
)
def test_compute_vertex_channels(matrix, cin, cout, expected):
    assert compute_vertex_channels(cin, cout, matrix) == expected


def test_cifar10_and_digits_networks(space):
    g = space.known()["inception_like"]
    big = space.to_graph(g, "cifar10")
    assert big.shape(big.input) == (32, 32, 3)
    assert big.shape(big.output) == (10,)
    small = space.to_graph(g, "digits")
    assert small.shape(small.input) == (8, 8, 1)
    assert small.shape(small.output) == (10,)
    assert small.meta["stem_channels"] == 16 and small.meta["cells_per_stack"] == 1
    assert 5_000 < small.params() < 50_000
    # Stacks run at 8x8, 4x4, 2x2 with 16/32/64 channels; two 2x2 max-pools downsample.
    pools = [n for n in small.g if small.op(n) == "max_pool" and small.attrs(n)["kernel"] == 2]
    assert [small.shape(n) for n in pools] == [(4, 4, 16), (2, 2, 32)]
    with pytest.raises(UnknownName):
        space.to_graph(g, "imagenet")
    # Space options override the dataset skeleton.
    wide = NB101Space(stem_channels=32, cells_per_stack=2).to_graph(g, "digits")
    assert wide.params() > small.params()


def test_truncation_and_concat_in_ir(space):
    # Output fan-in 3 splits 128 as 43/43/42; vertex 1 (43) also feeds vertex 3 (42): a slice.
    g = NB101Genotype(
        [
            [0, 1, 1, 0, 0],
            [0, 0, 0, 1, 1],
            [0, 0, 0, 0, 1],
            [0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0],
        ],
        ["input", C3, C1, MP, "output"],
    )
    graph = space.to_graph(g)
    splits = [n for n in graph.g if graph.op(n) == "split"]
    assert len(splits) == 9  # one per cell
    assert graph.shape(splits[0]) == (32, 32, 42)
    concats = [n for n in graph.g if graph.op(n) == "concat"]
    assert [graph.shape(graph.inputs(concats[0])[i])[-1] for i in range(3)] == [43, 43, 42]


# ----------------------------------------------------------------- pruning and hashing


def test_pruning_removes_unreachable_vertices(space):
    # Vertex 2 has no input (unreachable), vertex 4 feeds nothing (dangling).
    raw = NB101Genotype(
        [
            [0, 1, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 1, 0],
            [0, 0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 1],
            [0, 0, 0, 0, 0, 0, 0],
        ],
        ["input", C3, MP, C1, C3, C1, "output"],
    )
    pruned = raw.pruned()
    assert pruned.matrix == (
        (0, 1, 1, 0, 0),
        (0, 0, 0, 1, 0),
        (0, 0, 0, 0, 1),
        (0, 0, 0, 0, 1),
        (0, 0, 0, 0, 0),
    )
    assert pruned.ops == ("input", C3, C1, C1, "output")
    assert raw.spec_hash() == pruned.spec_hash() == hash_spec(pruned.matrix, pruned.ops)
    assert raw.num_edges == 5
    a, b = space.to_graph(raw), space.to_graph(pruned)
    assert a.canonical_hash() == b.canonical_hash()
    assert a.params() == b.params()
    # Changing the op of a pruned vertex changes nothing; of a live one, the hash.
    dead = NB101Genotype(raw.matrix, ["input", C3, C3, C1, C3, C1, "output"])
    live = NB101Genotype(raw.matrix, ["input", MP, MP, C1, C3, C1, "output"])
    assert dead.spec_hash() == raw.spec_hash()
    assert live.spec_hash() != raw.spec_hash()
    assert space.to_graph(live).canonical_hash() != a.canonical_hash()


def test_prune_matches_model_spec_examples():
    ops4 = ["input", C3, C1, "output"]
    assert prune([[0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], ops4) == (
        ((0, 1, 0), (0, 0, 1), (0, 0, 0)),
        ("input", C3, "output"),
    )
    assert prune([[0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]], ops4) == (
        ((0, 1, 0), (0, 0, 1), (0, 0, 0)),
        ("input", C1, "output"),
    )
    assert prune([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]], ops4) is None


def test_hash_is_invariant_to_vertex_permutation(space):
    rng = np.random.default_rng(7)
    for _ in range(20):
        g = space.sample(rng).pruned()
        n = len(g.matrix)
        inner = list(rng.permutation(range(1, n - 1)) if n > 2 else [])
        perm = [0, *inner, n - 1]  # new position of each old vertex
        m = [[0] * n for _ in range(n)]
        ops = [""] * n
        for i in range(n):
            ops[perm[i]] = g.ops[i]
            for j in range(n):
                m[perm[i]][perm[j]] = g.matrix[i][j]
        assert hash_spec(m, ops) == g.spec_hash()


# ----------------------------------------------------------------- notation and validation


def test_parse_round_trip(space, table):
    for g, _ in table:
        assert parse_nb101(g.to_str()) == g
        assert from_naslib_key(g.to_naslib_key()) == g
        assert space.resolve(g.to_naslib_key()) == g
    g = table[0][0]
    text = g.to_str()
    assert json.loads(text) == {"matrix": [list(r) for r in g.matrix], "ops": list(g.ops)}
    assert " " not in text
    assert space.parse(json.dumps(json.loads(text), indent=2)) == g
    small = space.known()["projection_only"]
    assert space.parse(small.to_str()) == small
    assert g.to_json() == {"space": "nb101", "arch": text}
    assert space.resolve("inception_like") == space.known()["inception_like"]


def _bad(matrix, ops):
    with pytest.raises(InvalidGenotype) as e:
        NB101Genotype(matrix, ops)
    return str(e.value)


def test_validation_errors_name_the_field():
    ok = [[0, 1, 0], [0, 0, 1], [0, 0, 0]]
    ops = ["input", C3, "output"]
    assert "upper triangular" in _bad([[0, 1, 0], [0, 0, 1], [1, 0, 0]], ops)
    assert "matrix[2][0]" in _bad([[0, 1, 0], [0, 0, 1], [1, 0, 0]], ops)
    full7 = [[1 if j > i else 0 for j in range(7)] for i in range(7)]
    msg = _bad(full7, ["input", C3, C3, C3, C3, C3, "output"])
    assert "21 edges" in msg and "at most 9" in msg
    full8 = [[1 if j == i + 1 else 0 for j in range(8)] for i in range(8)]
    assert "8 vertices" in _bad(full8, ["input"] + [C3] * 6 + ["output"])
    assert "ops[1]" in _bad(ok, ["input", "conv5x5", "output"])
    assert "unknown op" in _bad(ok, ["input", "conv5x5", "output"])
    assert "disconnected" in _bad([[0, 1, 0], [0, 0, 0], [0, 0, 0]], ops)
    assert "ops has 2" in _bad(ok, ["input", "output"])
    assert "ops[0]" in _bad(ok, [C3, C3, "output"])
    assert "ops[2]" in _bad(ok, ["input", C3, C3])
    assert "square" in _bad([[0, 1, 0], [0, 0], [0, 0, 0]], ops)
    assert "matrix[0][1]" in _bad([[0, 2, 0], [0, 0, 1], [0, 0, 0]], ops)
    # Edges count after pruning, as in the API: 11 raw edges, 6 of them live, is valid.
    m = [
        [0, 1, 0, 0, 0, 1, 1],
        [0, 0, 1, 0, 0, 1, 0],
        [0, 0, 0, 1, 0, 1, 0],
        [0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
    g = NB101Genotype(m, ["input", C3, C3, C3, C3, MP, "output"])
    assert sum(map(sum, g.matrix)) == 11 and g.num_edges == 6
    for text in ["not json", '{"matrix": [[0, 1], [0, 0]]}', "[1, 2]", "(0, 1)"]:
        with pytest.raises(InvalidGenotype):
            parse_nb101(text)


# ----------------------------------------------------------------- space protocol


def test_space_basics(space):
    assert isinstance(get_space("nb101"), NB101Space)
    assert space.size == 423_624
    assert len(space.choices()) == 26
    assert space.default_dataset == "cifar10"
    assert set(space.datasets) == {"cifar10", "digits"}
    assert not space.contains("not a genotype")


def test_sample_mutate_crossover_always_valid(space):
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(200)]
    assert len({s.spec_hash() for s in samples}) > 100
    for g in samples:
        assert space.contains(g) and len(g.matrix) == 7 and g.num_edges <= 9
        child = space.mutate(g, rng)
        assert space.contains(child)
        assert child.spec_hash() != g.spec_hash()
        diff = sum(
            a != b for a, b in zip(space.to_indices(g), space.to_indices(child), strict=True)
        )
        assert diff == 1
    for a, b in zip(samples[::2], samples[1::2], strict=True):
        assert space.contains(space.crossover(a, b, rng))
    # Neighbourhoods hold distinct, valid, different networks one change away.
    nbrs = space.neighbours(samples[0])
    assert nbrs and len(set(nbrs)) == len(nbrs)
    assert all(n.spec_hash() != samples[0].spec_hash() for n in nbrs)
    # Cells smaller than 7 vertices move through their padded form.
    small = space.known()["projection_only"]
    assert len(small.full().matrix) == 7 and small.full().spec_hash() == small.spec_hash()
    assert all(space.contains(n) for n in space.neighbours(small))


def test_encode_decode(space):
    rng = np.random.default_rng(1)
    for _ in range(50):
        g = space.sample(rng)
        v = space.encode(g)
        assert v.shape == (36,) and set(np.unique(v)) <= {0.0, 1.0}
        assert v[21:].reshape(5, 3).sum(axis=1).tolist() == [1.0] * 5
        assert space.decode(v) == g
        assert space.decode(v * 0.9 + 0.05) == g
    small = space.known()["inception_like"].pruned()
    assert space.decode(space.encode(small)).spec_hash() == small.spec_hash()
    with pytest.raises(InvalidGenotype, match="length 36"):
        space.decode(np.zeros(10))
    with pytest.raises(InvalidGenotype, match="disconnected"):
        space.decode(np.zeros(36))


def test_suggest_with_optuna(space):
    optuna = pytest.importorskip("optuna")
    g = space.known()["inception_like"]
    params = dict(zip((n for n, _ in space.choices()), space.to_indices(g), strict=True))
    assert space.suggest(optuna.trial.FixedTrial(params)) == g
    params = {n: 0 for n, _ in space.choices()}
    with pytest.raises(InvalidGenotype, match="disconnected"):
        space.suggest(optuna.trial.FixedTrial(params))
