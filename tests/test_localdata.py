"""Local data by --data-dir: CIFAR-100 python folders and numpy .npz arrays (tiny files in
the real formats), their one-line errors, and the train evaluator taking them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from nas.data import load_cifar100, load_dataset
from nas.errors import DataError
from nas.localdata import load_arrays, load_local, local_kind


def _write_cifar100(root, n_train=50, n_test=20, label_key=b"fine_labels"):
    """A ``cifar-100-python`` folder: ``train`` and ``test`` pickles as CIFAR-100 ships them
    (uint8 rows of 3072, fine and coarse labels as lists), tiny."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name, n, protocol in (("train", n_train, 2), ("test", n_test, 5)):
        batch = {
            b"filenames": [f"{k}.png".encode() for k in range(n)],
            b"batch_label": f"{name} batch".encode(),
            label_key: [int(v) for v in rng.integers(0, 100, n)],
            b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"apple"] * 100}))
    return root


def test_cifar100_folder_loads_with_fine_labels(tmp_path):
    root = _write_cifar100(tmp_path / "cifar-100-python")
    assert local_kind(root) == "cifar100"
    d = load_cifar100(root)
    assert d.name == "cifar100" and d.num_classes == 100
    assert d.x_train.shape == (50, 32, 32, 3) and d.x_val.shape == (20, 32, 32, 3)
    raw = load_pickle_fine(root / "train")
    np.testing.assert_array_equal(d.y_train, raw)  # fine labels, not the coarse ones
    again = load_dataset("cifar100", data_dir=str(root))
    np.testing.assert_array_equal(again.x_val, d.x_val)
    bad = _write_cifar100(tmp_path / "coarse-only", label_key=b"labels")
    with pytest.raises(DataError, match=r"train is not a cifar100 python batch: .*fine_labels"):
        load_cifar100(bad)
    (root / "test").unlink()
    with pytest.raises(DataError, match="cifar100 folder .* is missing .*test"):
        load_cifar100(root)


def load_pickle_fine(path):
    from nas.data import load_pickle_batch

    return np.asarray(load_pickle_batch(path)[b"fine_labels"], np.int32)


def test_npz_arrays_keys_split_and_standardise(tmp_path):
    rng = np.random.default_rng(0)
    grey = tmp_path / "grey.npz"
    x = rng.integers(0, 256, (40, 12, 10), dtype=np.uint8)
    np.savez(grey, x=x, y=np.repeat(np.arange(4), 10))
    assert local_kind(grey) == "arrays"
    d = load_arrays(grey, seed=0)
    assert d.input_shape == (12, 10, 1) and d.num_classes == 4
    assert len(d.x_train) == 32 and sorted(np.bincount(d.y_val)) == [2, 2, 2, 2]
    np.testing.assert_allclose(d.x_train.mean(), 0, atol=1e-4)
    np.testing.assert_array_equal(load_arrays(grey, seed=0).y_val, d.y_val)

    keras = tmp_path / "keras.npz"
    xs = rng.normal(size=(30, 8, 8, 3)).astype(np.float32)
    np.savez(keras, x_train=xs[:24], y_train=np.arange(24) % 3, x_test=xs[24:], y_test=[0, 1] * 3)
    k = load_local(keras)
    assert (len(k.x_train), len(k.x_val), k.input_shape) == (24, 6, (8, 8, 3))

    named = tmp_path / "named.npz"
    np.savez(named, images=xs, labels=np.arange(30) % 3)
    assert load_arrays(named).num_classes == 3


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"data": np.zeros((4, 8, 8)), "target": np.zeros(4, int)},
            "needs images and labels as x/y",
        ),
        ({"x": np.zeros((4, 8, 8, 2)), "y": np.zeros(4, int)}, r"x must be .* got \(4, 8, 8, 2\)"),
        ({"x": np.zeros((4, 8)), "y": np.zeros(4, int)}, r"x must be \(N, H, W\)"),
        ({"x": np.zeros((4, 8, 8), bool), "y": np.zeros(4, int)}, "integers or floats, got bool"),
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(3, int)}, "must be 4 integer labels"),
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(4)}, "integer labels .* got float64"),
        ({"x": np.full((4, 8, 8), np.nan), "y": np.zeros(4, int)}, "NaN or infinite"),
        ({"x": np.zeros((4, 8, 8)), "y": -np.ones(4, int)}, "negative label"),
        ({"x": np.array(["a"] * 4), "y": np.zeros(4, int)}, r"x must be \(N, H, W\)"),
    ],
)
def test_npz_errors_are_one_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message) as e:
        load_arrays(path)
    assert "\n" not in str(e.value)


def test_npz_that_is_not_one_or_holds_objects(tmp_path):
    fake = tmp_path / "fake.npz"
    fake.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_arrays(fake)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([object()] * 4), y=np.zeros(4, int))
    with pytest.raises(DataError, match="not a readable .npz file"):  # no pickles read
        load_arrays(objects)
    with pytest.raises(DataError, match="is no data this reads"):
        load_local(tmp_path)


def test_train_evaluator_takes_cifar100_and_arrays(tmp_path):
    """--data-dir without --dataset: a CIFAR-100 folder trains NB201's CIFAR-100 network;
    an .npz file trains the network adapted to its image size and classes."""
    from nas.search_spaces import get_space

    from nas.evaluators.train import TrainEvaluator

    space = get_space("nb201")
    g = space.sample(np.random.default_rng(0))
    c100 = TrainEvaluator(space, data_dir=str(_write_cifar100(tmp_path / "c100")))
    assert c100.dataset == "cifar100" and not c100.folder
    assert c100.graph(g).shape(c100.graph(g).output) == (100,)
    path = tmp_path / "a.npz"
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.integers(0, 256, (20, 16, 16)), y=np.arange(20) % 5)
    arr = TrainEvaluator(space, data_dir=str(path))
    graph = arr.graph(g)
    assert arr.folder and graph.shape(graph.input) == (16, 16, 1)
    assert graph.shape(graph.output) == (5,)
    assert arr.settings()["data_kind"] == "arrays"


def test_supernet_evaluator_takes_a_cifar_folder_and_refuses_other_data_in_one_line(tmp_path):
    """--data-dir without --dataset for a supernet: a CIFAR-10 folder selects NAS-Bench-Macro's
    CIFAR-10 supernet; an .npz file or a CIFAR folder the space has no network for is one
    line naming the layout and what to do instead."""
    from nas.search_spaces import get_space

    from nas.errors import ConfigError
    from nas.evaluators.oneshot import SupernetEvaluator

    c10 = tmp_path / "cifar-10-batches-py"
    c10.mkdir()
    for name in ("data_batch_1", "test_batch"):
        (c10 / name).write_bytes(b"")  # the layout is what is read here, not the batches
    ev = SupernetEvaluator(get_space("nbmacro"), data_dir=str(c10))
    assert ev.dataset == "cifar10"
    with pytest.raises(ConfigError, match="cifar10 folder: the supernet evaluator trains ofa"):
        SupernetEvaluator(get_space("ofa"), data_dir=str(c10))
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros((4, 8, 8)), y=np.arange(4))
    with pytest.raises(ConfigError, match=r"is an \.npz file: .*--evaluator train") as e:
        SupernetEvaluator(get_space("nbmacro"), data_dir=str(path))
    assert "\n" not in str(e.value)
