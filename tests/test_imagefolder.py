"""Image folders: loading, splitting, retargeting a space's network, and a search on one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nas.errors import DataError
from nas.imagefolder import is_image_folder, load_image_folder, retarget
from tests.conftest import run_cli


def _write_folder(root, classes=3, per_class=10, size=20):
    """Class ``c``: a bright square at a class-specific place on noise (PNG and JPEG)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class_{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size + 4, 3), dtype=np.uint8)
            o = 2 + 5 * c
            img[o : o + 6, o : o + 6] = 255
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(img).save(d / f"{i}.{ext}")
    return root


def test_folder_loads_splits_and_standardises(tmp_path):
    root = _write_folder(tmp_path / "imgs")
    assert is_image_folder(root) and not is_image_folder(tmp_path / "nothing")
    d = load_image_folder(root, seed=0, image_size=16)
    assert d.num_classes == 3 and d.input_shape == (16, 16, 3)
    assert len(d.x_train) == 24 and len(d.x_val) == 6  # 20% of every class held out
    assert sorted(np.bincount(d.y_val)) == [2, 2, 2]
    np.testing.assert_allclose(d.x_train.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    again = load_image_folder(root, seed=0, image_size=16)
    np.testing.assert_array_equal(again.y_val, d.y_val)
    (root / "class_0" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png is not a readable image"):
        load_image_folder(root)
    with pytest.raises(DataError, match="at least two"):
        load_image_folder(root / "class_1")


def test_retargeted_network_takes_the_folders_images():
    from nas.search_spaces import get_space

    space = get_space("nb201")
    g = space.to_graph(space.sample(np.random.default_rng(0)), "cifar10")
    r = retarget(g, (16, 16, 3), 3)
    assert r.shape(r.input) == (16, 16, 3) and r.shape(r.output) == (3,)
    assert g.shape(g.input) == (32, 32, 3)  # the original is untouched
    assert r.flops() < g.flops()


def test_search_with_the_train_evaluator_on_an_image_folder(tmp_path):
    """`nas search --evaluator train --data-dir FOLDER` needs no --dataset."""
    root = _write_folder(tmp_path / "imgs")
    out = tmp_path / "run"
    r = run_cli(
        "search", "--space", "nb201", "--strategy", "random", "--evaluator", "train",
        "--data-dir", str(root), "--budget", "1", "--steps", "2", "--seed", "0",
        "--out", str(out), "--no-progress", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_trials"] == 1 and res["n_failed"] == 0
    (graph_file,) = out.glob("trials/*/arch.json")
    doc = json.loads(graph_file.read_text())
    assert doc["meta"]["dataset"] == "folder"
    assert doc["nodes"][0]["op"] == "input" and doc["nodes"][0]["shape"] == [32, 32, 3]
    assert doc["nodes"][-1]["shape"] == [3]  # the folder's three classes
