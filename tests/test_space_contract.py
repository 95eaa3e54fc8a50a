"""The contract every registered search space satisfies (run for each one)."""

from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest
from nas.search_spaces import get_space, space_names

from nas.errors import InvalidGenotype
from nas.graph import ArchGraph


@pytest.fixture(params=space_names())
def space(request):
    return get_space(request.param)


def samples(space, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def test_sampling_is_pure_and_seeded(space):
    before = pickle.dumps(space)
    a, b = samples(space, seed=3), samples(space, seed=3)
    assert a == b
    assert pickle.dumps(space) == before, "sampling must not change the space"
    assert all(space.contains(g) for g in a)


def test_genotypes_are_immutable_hashable_values(space):
    g = samples(space, 1)[0]
    assert hash(g) == hash(copy.deepcopy(g)) and g == copy.deepcopy(g)
    with pytest.raises((AttributeError, TypeError)):
        g.some_field = 1  # frozen


def test_native_string_and_json_round_trip(space):
    for g in samples(space):
        assert space.parse(g.to_str()) == g
        doc = json.loads(json.dumps(g.to_json()))
        assert doc["space"] == space.name
        assert space.parse(doc["arch"]) == g


def test_mutation_stays_in_space_and_changes_the_network(space):
    rng = np.random.default_rng(1)
    for g in samples(space):
        child = space.mutate(g, rng)
        assert space.contains(child)
        assert child != g


def test_encoding_has_fixed_length_and_decodes(space):
    gs = samples(space, 6)
    vecs = [space.encode(g) for g in gs]
    assert len({v.shape for v in vecs}) == 1 and vecs[0].ndim == 1
    for g, v in zip(gs, vecs, strict=True):
        back = space.decode(v)
        assert space.contains(back)
        d = space.default_dataset
        assert space.to_graph(back, d).canonical_hash() == space.to_graph(g, d).canonical_hash()


def test_graph_is_valid_and_serialisable(space):
    g = samples(space, 1)[0]
    graph = space.to_graph(g, space.default_dataset)
    assert graph.params() > 0 and graph.flops() > 0
    back = ArchGraph.loads(graph.dumps())
    assert back.canonical_hash() == graph.canonical_hash()
    assert back.meta.get("space") == space.name


def test_size_and_garbage(space):
    assert space.size > 1
    for bad in ("", "not an architecture", "|||", "[[[", "{}"):
        with pytest.raises(InvalidGenotype):
            space.parse(bad)
    assert not space.contains("not a genotype")


def test_known_architectures_resolve(space):
    for name, g in space.known().items():
        assert space.resolve(name) == g
        assert space.contains(g), f"known architecture {name!r} is not in {space.name}"


def test_smallest_is_a_lower_bound_of_every_cost(space):
    """Hard limits below the smallest architecture's cost are refused before a search: that
    is only right if no architecture of the space costs less."""
    small = space.smallest()
    if small is None:
        pytest.skip(f"{space.name} declares no smallest architecture")
    assert space.contains(small)
    d = space.default_dataset
    g = space.to_graph(small, d)
    floor = (g.params(), g.flops())
    for other in samples(space, 12, seed=7) + list(space.known().values()):
        h = space.to_graph(other, d)
        assert h.params() >= floor[0] and h.flops() >= floor[1], other.to_str()[:80]
