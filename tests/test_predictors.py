"""Predictors: data SPECs, features, the protocol (fit/predict/save/load/OOD), GENNAPE, baselines, CLI.

Fast by design: a few dozen architectures and a few training steps each.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nas.errors import ConfigError, NasError, UnknownName
from tests.conftest import require_data, run_cli

NB201 = "nasbench/nb201_natsbench_tss_test_acc_200ep.csv"
MACRO = "nasbench/nas-bench-macro_cifar10.json"
TINY = {"pretrain_steps": 5, "steps": 80, "finetune_steps": 3, "hidden": 16, "embed": 8}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "nas-cache"))


def test_parse_spec():
    from nas.predictors.data import parse_spec

    assert str(parse_spec("nb201:cifar10:100")) == "nb201:cifar10:100"
    assert parse_spec("nb201:100").n == 100
    assert parse_spec("nb201:cifar100").dataset == "cifar100"
    assert parse_spec("nbmacro").n is None
    with pytest.raises(UnknownName, match="choose one of"):
        parse_spec("nb999")
    with pytest.raises(UnknownName, match="no dataset"):
        parse_spec("nb101:cifar100")
    with pytest.raises(ConfigError):
        parse_spec("nb201:cifar10:x:3")


def test_split_disjoint_and_seeded():
    require_data(NB201)
    from nas.predictors.data import load_split

    tr, te = load_split(["nb201:cifar10:30"], "nb201:cifar10:40", seed=3)
    assert len(tr) == 30 and len(te) == 40
    assert not {g.arch for g in tr.graphs} & {g.arch for g in te.graphs}
    tr2, _ = load_split(["nb201:cifar10:30"], "nb201:cifar10:40", seed=3)
    assert tr2.graphs == tr.graphs
    tr3, _ = load_split(["nb201:cifar10:30"], "nb201:cifar10:40", seed=4)
    assert tr3.graphs != tr.graphs
    assert 10 < tr.y.mean() < 100


def test_features_liveness_fusion_and_repeats():
    require_data(NB201)
    from nas.predictors.features import CATEGORIES, graph_features
    from nas.search_spaces import get_space

    space = get_space("nb201")
    best = graph_features(space.to_graph(space.known()["best_cifar10"]))
    full = space.to_graph(space.known()["best_cifar10"])
    # BN and ReLU fused away, 5 identical cells per stage kept once.
    assert best.num_nodes < len(full) / 5
    cats = best.nodes[:, : len(CATEGORIES)].argmax(1)
    assert CATEGORIES.index("batch_norm") not in cats
    assert best.senders.max() < best.num_nodes and best.receivers.max() < best.num_nodes
    # A cell whose output is always zero leaves no cell convolutions alive.
    dead = "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_3x3~1|none~2|"
    f = graph_features(space.to_graph(space.parse(dead)))
    assert f.num_nodes < 12


def test_spatial_depth_is_the_longest_path_in_live_spatial_convs():
    require_data(NB201)
    from nas.predictors.features import GLOBALS, SPATIAL_DEPTH_SCALE, graph_features
    from nas.search_spaces import get_space

    def depth(space_name: str, arch: str) -> float:
        space = get_space(space_name)
        g = graph_features(space.to_graph(space.parse(arch))).globals
        return float(2.0 ** (g[GLOBALS.index("spatial_depth")] * SPATIAL_DEPTH_SCALE) - 1.0)

    # NB201: the 3x3 stem, 15 cells, and two residual blocks of two 3x3 convs; the blocks'
    # 1x1 shortcuts and 1x1 cell convs widen nothing and count nothing.
    conv3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert depth("nb201", conv3) == pytest.approx(1 + 15 * 3 + 2 * 2, abs=1e-3)
    skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    assert depth("nb201", skip) == pytest.approx(5, abs=1e-3)
    last3 = "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    assert depth("nb201", last3) == pytest.approx(1 + 15 + 4, abs=1e-3)
    # A 3x3 conv fed only by zeros is dead: this cell is a skip connection.
    dead = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    assert depth("nb201", dead) == pytest.approx(5, abs=1e-3)
    # NAS-Bench-Macro: the stem and one depthwise conv per MBConv layer; an identity at a
    # stride-2 layer is a 1x1 conv.
    for arch, want in (("00000000", 1), ("10000000", 2), ("02012100", 5), ("22222222", 9)):
        assert depth("nbmacro", arch) == pytest.approx(want, abs=1e-3), arch


def test_feature_cache_roundtrip(tmp_path):
    require_data(NB201)
    from nas.predictors.data import load_spec
    from nas.predictors.features import FeatureStore

    refs = load_spec("nb201:cifar10:5", seed=0).graphs
    a = FeatureStore(tmp_path).get(refs)
    b = FeatureStore(tmp_path).get(refs)  # a new store reads the file
    assert list(tmp_path.glob("features-*.npz"))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.nodes, y.nodes)
        np.testing.assert_array_equal(x.senders, y.senders)
    # A flush writes only what is new (a shard); many shards are merged when read.
    more = load_spec("nb201:cifar10:40", seed=1).graphs
    store = FeatureStore(tmp_path)
    for g in more:
        store.get([g])
    shards = list(tmp_path.glob("features-*+*.npz"))
    assert len(shards) >= FeatureStore.MAX_SHARDS
    c = FeatureStore(tmp_path).get(more, flush=False)
    assert not list(tmp_path.glob("features-*+*.npz"))
    for x, y in zip(c, FeatureStore(tmp_path).get(more), strict=True):
        np.testing.assert_array_equal(x.nodes, y.nodes)


def test_fcm_recovers_two_clusters():
    from nas.predictors.gennape import fuzzy_cmeans, memberships

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (30, 2)), rng.normal(5, 0.1, (30, 2))])
    c, u = fuzzy_cmeans(x, 2, seed=0)
    assert np.allclose(u.sum(1), 1.0)
    assert sorted(np.round(c[:, 0]).tolist()) == [0.0, 5.0]
    assert (u.argmax(1)[:30] != u.argmax(1)[30:][0]).all()
    np.testing.assert_allclose(memberships(x, c), u, atol=1e-6)


@pytest.fixture(scope="module")
def nb201_small():
    require_data(NB201)
    from nas.predictors.data import load_split

    return load_split(["nb201:cifar10:40"], "nb201:cifar10:20", seed=0)


def test_gennape_fit_predict_save_load_ood(nb201_small, tmp_path):
    from nas.predictors.base import load_predictor
    from nas.predictors.evaluate import rank_metrics
    from nas.predictors.gennape import GennapePredictor
    from nas.search_spaces import get_space

    tr, te = nb201_small
    p = GennapePredictor(seed=0, **TINY).fit(tr.graphs, tr.y, tr.groups)
    mean, std = p.predict(te.graphs)
    assert mean.shape == (20,) and std.shape == (20,)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    # 40 training cells, 80 steps: already a clearly positive ranking on unseen cells.
    assert rank_metrics(mean, te.y)["kendall_tau"] > 0.3
    p.save(tmp_path / "g")
    assert {f.name for f in (tmp_path / "g").iterdir()} == {"predictor.json", "arrays.safetensors"}
    q = load_predictor(tmp_path / "g")
    m2, s2 = q.predict(te.graphs)
    np.testing.assert_array_equal(mean, m2)
    np.testing.assert_array_equal(std, s2)
    # In-distribution inputs mostly pass; a network from another space is far away.
    assert p.ood(tr.graphs).mean() <= 0.1 and p.ood(te.graphs).mean() <= 0.3
    macro = get_space("nbmacro")
    far = macro.to_graph(macro.parse("22222222"))
    d_far = p.ood_distance([far])[0]
    assert p.ood([far])[0], (d_far, p.ood_detector.threshold)
    assert np.array_equal(q.ood([far]), p.ood([far]))
    # Few-shot fine-tuning runs and changes the predictions.
    p.fine_tune(te.graphs[:5], te.y[:5])
    assert not np.array_equal(p.predict(te.graphs)[0], mean)


def test_gennape_scale_free_encoder_ignores_absolute_size_and_dense_matches_flat(nb201_small):
    import jax.numpy as jnp
    from flax import nnx
    from nas.predictors.features import GLOBALS, GraphFeatures, features
    from nas.predictors.gennape.model import CHANNEL_COLS, Gennape, pack, pack_dense

    f = features(nb201_small[0].graphs[:3])
    # The same networks 4x wider with 4x the FLOPs: channels shift in log units.
    wide = []
    for x in f:
        nodes = x.nodes.copy()
        nodes[:, list(CHANNEL_COLS)] += 0.2  # log2(4) / 10
        g = x.globals.copy()
        g[GLOBALS.index("log_flops")] += 0.3
        g[GLOBALS.index("log_params")] += 0.2
        g[GLOBALS.index("mean_log_channels")] += 0.2
        wide.append(GraphFeatures(nodes, x.senders, x.receivers, g))
    a, b = pack(f), pack(wide)
    for free in (True, False):
        m = Gennape(16, 2, 8, 2, 8, scale_free=free, cost="flops", rngs=nnx.Rngs(params=0))
        m.cost[...] = jnp.ones(1)
        za, zb = m.encoder(a)[:3], m.encoder(b)[:3]
        assert np.allclose(za, zb, atol=1e-5) == free
        # Inference's dense batches (adjacency products) compute the same function.
        np.testing.assert_allclose(m.encoder(pack_dense(wide))[:3], zb, atol=1e-4)
        if free:  # only the linear cost term sees the size: +0.3 log FLOPs, +0.3 output.
            ya, yb = m.heads(za, a["globals"][:3]), m.heads(zb, b["globals"][:3])
            np.testing.assert_allclose(yb - ya, 0.3, atol=1e-5)
    with pytest.raises(ConfigError, match="cost="):
        from nas.predictors.gennape import GennapePredictor

        GennapePredictor(cost="latency")
    with pytest.raises(ConfigError, match="prior="):
        GennapePredictor(prior="latency")


def test_gennape_adds_its_network_to_the_compute_prior(nb201_small):
    from nas.predictors.evaluate import rank_metrics
    from nas.predictors.features import features
    from nas.predictors.gennape import GennapePredictor
    from nas.predictors.gennape.prior import EffectiveFlops

    tr, te = nb201_small
    # With the network's part scaled to zero the prediction is the prior: log live MACs
    # plus the fitted spatial-depth term.
    p = GennapePredictor(seed=0, residual=0.0, **TINY).fit(tr.graphs, tr.y, tr.groups)
    assert p.prior is not None and p.prior.slope > 0 and p.prior.depth_weight != 0.0
    f = features(te.graphs)
    live = EffectiveFlops().score(f) + p.prior.depth_weight * _log_depth(f)
    mean = p.predict(te.graphs)[0]
    slope, icept = np.polyfit(live, mean, 1)
    assert slope > 0
    np.testing.assert_allclose(mean, slope * live + icept, atol=1e-4 * np.ptp(mean))
    # With it, the network reorders networks of equal compute.
    q = GennapePredictor(seed=0, **TINY).fit(tr.graphs, tr.y, tr.groups)
    assert rank_metrics(q.predict(te.graphs)[0], live)["kendall_tau"] < 0.99


def _log_depth(feats) -> np.ndarray:
    from nas.predictors.features import GLOBALS, SPATIAL_DEPTH_SCALE

    g = np.stack([f.globals for f in feats])[:, GLOBALS.index("spatial_depth")]
    return g * SPATIAL_DEPTH_SCALE * np.log(2.0)


def test_effective_flops_prior_starts_at_log_flops_and_learns_op_weights(nb201_small):
    require_data(MACRO)
    require_data("nasbench/naslib_zc_nasbench101.json")
    from nas.predictors.data import load_spec
    from nas.predictors.evaluate import rank_metrics
    from nas.predictors.features import as_graph, features
    from nas.predictors.gennape.prior import EffectiveFlops

    # Unfitted (all op weights 0) the score is the log of the MACs that reach the output,
    # also for networks whose repeated cells or blocks the compact graph collapses (NB201
    # stacks, Macro layers): log FLOPs where nothing is dead, less where a cell computes a
    # branch that a `none` edge cuts off.
    macro = load_spec("nbmacro:6", seed=1)
    graphs = list(nb201_small[0].graphs[:12]) + list(macro.graphs)
    log_macs = np.log([as_graph(g).flops() for g in graphs])
    score = EffectiveFlops().score(features(graphs))
    live = np.isclose(score, log_macs, atol=2e-3)
    assert live[12:].all() and live[:12].sum() >= 3, (score, log_macs)
    assert (score[~live] < log_macs[~live] - 0.05).all()
    # Fitted by ranking on NB101, a 1x1 convolution's MACs count for less than a 3x3's,
    # and the prior ranks NB101 better than FLOPs alone.
    nb101 = load_spec("nb101:300", seed=0)
    f = features(nb101.graphs)
    ys = (nb101.y - nb101.y.mean()) / nb101.y.std()
    prior = EffectiveFlops().fit(f, ys, np.zeros(len(f), int))
    w = prior.weights()
    assert w["conv_1x1"] < w["conv"], w
    tau_prior = rank_metrics(prior(f), nb101.y)["kendall_tau"]
    tau_flops = rank_metrics(np.log([as_graph(g).flops() for g in nb101.graphs]), nb101.y)
    assert tau_prior > tau_flops["kendall_tau"] + 0.03, (tau_prior, tau_flops)
    assert prior.slope > 0
    again = EffectiveFlops.restore(*prior.state())
    np.testing.assert_array_equal(again(f), prior(f))


def test_depth_prior_learns_that_spatial_depth_pays_on_nb101():
    require_data("nasbench/naslib_zc_nasbench101.json")
    from nas.predictors.data import load_spec
    from nas.predictors.evaluate import rank_metrics
    from nas.predictors.features import features
    from nas.predictors.gennape.prior import EffectiveFlops

    nb101 = load_spec("nb101:300", seed=0)
    f = features(nb101.graphs)
    ys = (nb101.y - nb101.y.mean()) / nb101.y.std()
    groups = np.zeros(len(f), int)
    flops = EffectiveFlops(steps=0).fit(f, ys, groups)
    prior = EffectiveFlops(ops=False, depth=True).fit(f, ys, groups)
    assert flops.depth_weight == 0.0 and not flops.w.any()
    # Only the depth term is fitted: op weights stay at plain live MACs.
    assert prior.depth_weight > 0.1 and not prior.w.any()
    tau_flops = rank_metrics(flops(f), nb101.y)["kendall_tau"]
    tau_prior = rank_metrics(prior(f), nb101.y)["kendall_tau"]
    assert tau_prior > tau_flops + 0.03, (tau_prior, tau_flops)
    again = EffectiveFlops.restore(*prior.state())
    assert again.depth_weight == prior.depth_weight
    np.testing.assert_array_equal(again(f), prior(f))


def test_gennape_network_share_for_unseen_spaces(tmp_path):
    require_data(NB201)
    require_data(MACRO)
    require_data("nasbench/naslib_zc_nasbench101.json")
    from nas.predictors.base import load_predictor
    from nas.predictors.data import LabelledSet, load_spec
    from nas.predictors.features import features
    from nas.predictors.gennape import GennapePredictor

    a, b = load_spec("nb201:cifar10:40", seed=0), load_spec("nbmacro:40", seed=0)
    train = LabelledSet.concat([a, b])
    p = GennapePredictor(seed=0, transfer="lofo", **TINY).fit(train.graphs, train.y, train.groups)
    assert p.families == {"nb201", "nbmacro"}
    # The weight is the share whose gain over the prior alone has the largest lower
    # bootstrap bound on the held-out family that gains least (the two ways round).
    from scipy.stats import kendalltau

    grid = np.linspace(0.0, 1.0, 11)
    assert p.transfer_weight in grid
    rng = np.random.default_rng(0)
    bounds = []
    for src, dst in ((b, a), (a, b)):  # nb201 held out first: families in sorted order
        sub = GennapePredictor(seed=0, transfer="full", **TINY).fit(src.graphs, src.y, src.groups)
        prior, net = sub._parts(features(dst.graphs))
        gains = []
        for _ in range(200):
            i = rng.integers(0, len(dst), len(dst))
            t = np.array([kendalltau(prior[i] + r * net[i], dst.y[i])[0] for r in grid])
            gains.append(t - t[0])
        bounds.append(np.quantile(gains, 0.1, axis=0))
    worst = np.min(bounds, axis=0)
    assert p.transfer_weight == (grid[np.argmax(worst)] if worst.max() > 0 else 0.0)
    # A family it never saw gets prior + weight * network; a family it saw gets all of it.
    for spec, weight in (("nb101:20", p.transfer_weight), ("nb201:cifar10:15", 1.0)):
        s = load_spec(spec, seed=3)
        prior, net = p._parts(features(s.graphs))
        y_mean, y_scale = p.label_stats.get(s.groups[0], (p.y_mean, p.y_scale))
        mean = (p.predict(s.graphs)[0] - y_mean) / y_scale  # each family's own label scale
        np.testing.assert_allclose(mean, prior + weight * net, atol=1e-4 * (np.ptp(mean) + 1))
    p.save(tmp_path / "g")
    q = load_predictor(tmp_path / "g")
    assert q.families == p.families and q.transfer_weight == p.transfer_weight
    nb101 = load_spec("nb101:20", seed=3)
    np.testing.assert_array_equal(q.predict(nb101.graphs)[0], p.predict(nb101.graphs)[0])
    # A space it never saw is out of the training distribution, whatever the distances say.
    assert p.ood(nb101.graphs).all() and p.ood(a.graphs).mean() <= 0.3
    # By default a space it never saw gets the prior alone.
    default = GennapePredictor(seed=0, **TINY).fit(train.graphs, train.y, train.groups)
    assert default.transfer_weight == 0.0
    prior, _ = default._parts(features(nb101.graphs))
    mean = (default.predict(nb101.graphs)[0] - default.y_mean) / default.y_scale
    np.testing.assert_allclose(mean, prior, atol=1e-5 * (np.ptp(mean) + 1))
    # Graphs that do not say their space (built by hand) are one family of their own: a
    # predictor trained on such graphs gives them its whole network part.
    from nas.predictors.features import as_graph

    hand = [as_graph(g) for g in a.graphs]
    for g in hand:
        g.meta.clear()
    by_hand = GennapePredictor(seed=0, **TINY).fit(hand, a.y, a.groups)
    assert by_hand.families == {""}
    prior, net = by_hand._parts(features(hand))
    mean = (by_hand.predict(hand)[0] - by_hand.y_mean) / by_hand.y_scale
    np.testing.assert_allclose(mean, prior + net, atol=1e-4 * (np.ptp(mean) + 1))
    assert np.ptp(net) > 0
    # Without a prior there is nothing but the network to give an unseen space.
    bare = GennapePredictor(seed=0, prior="none", **TINY).fit(a.graphs, a.y, a.groups)
    assert bare.prior is None and bare.transfer_weight == 1.0
    # transfer="full" keeps the whole network part for every family.
    full = GennapePredictor(seed=0, transfer="full", **TINY).fit(
        train.graphs, train.y, train.groups
    )
    assert full.transfer_weight == 1.0


def test_gbm_mlp_save_load_and_space_check(nb201_small, tmp_path):
    require_data(MACRO)
    from nas.predictors.base import get_predictor, load_predictor
    from nas.predictors.data import load_spec

    tr, te = nb201_small
    for name in ("gbm", "mlp"):
        p = get_predictor(name, seed=0, members=2).fit(tr.graphs, tr.y)
        mean, std = p.predict(te.graphs)
        q = load_predictor(p.save(tmp_path / name))
        np.testing.assert_array_equal(q.predict(te.graphs)[0], mean)
        assert not p.zero_shot
        with pytest.raises(ConfigError, match="cannot score 'nbmacro'"):
            p.predict(load_spec("nbmacro:2").graphs)


def test_proxies_params_flops_and_zero_cost(nb201_small):
    from nas.predictors.base import get_predictor

    tr, te = nb201_small
    g = te.graphs[0].graph()
    p = get_predictor("params").fit(tr.graphs[:5])
    assert p.predict([g])[0][0] == pytest.approx(g.params(), rel=1e-5)
    assert get_predictor("flops").fit(tr.graphs[:5]).predict([g])[0][0] == pytest.approx(
        g.flops(), rel=1e-5
    )


def test_zero_cost_proxies_on_a_small_network():
    from nas.predictors.base import get_predictor
    from nas.predictors.baselines import ZERO_COST

    from nas.graph import ArchGraph

    def net(width):
        return ArchGraph.sequential(
            (8, 8, 3),
            [
                ("conv", {"out_channels": width, "kernel": 3, "padding": 1}),
                ("batch_norm", {}),
                ("relu", {}),
                ("global_pool", {}),
                ("dense", {"out_features": 10}),
            ],
        )

    small, big = net(2), net(16)
    for name in ZERO_COST:  # synflow reads no data: it has no batch
        p = get_predictor(name, **({} if name == "synflow" else {"batch": 4})).fit([small])
        s = p.predict([small])[0]
        assert np.all(np.isfinite(s)), name
    # SynFlow grows with width (more paths).
    syn = get_predictor("synflow").fit([small]).predict([small, big])[0]
    assert syn[1] > syn[0]


def test_registry_errors():
    from nas.predictors.base import get_predictor, load_predictor

    with pytest.raises(UnknownName, match="choose one of"):
        get_predictor("nope")
    with pytest.raises(ConfigError, match="gennape predictor options: unknown key 'layerz'"):
        get_predictor("gennape", layerz=3)
    with pytest.raises(NasError, match="not a saved predictor"):
        load_predictor("/nonexistent/folder")


def test_cli_evaluate_fit_predict(tmp_path):
    require_data(NB201)
    env_note = "gbm keeps the CLI test fast; gennape is covered above"
    r = run_cli(
        "predictor",
        "evaluate",
        "--predictor",
        "gbm",
        "--train",
        "nb201:cifar10:60",
        "--test",
        "nb201:cifar10:60",
        "--seed",
        "1",
        "--json",
    )
    assert r.returncode == 0, (r.stderr, env_note)
    out = json.loads(r.stdout)
    for key in ("kendall_tau", "spearman", "n_train", "n_test", "predictions_per_second"):
        assert key in out
    assert out["n_train"] == 60 and out["n_test"] == 60
    assert -1.0 <= out["kendall_tau"] <= 1.0 and out["predictions_per_second"] > 0
    r = run_cli(
        "predictor",
        "fit",
        "--predictor",
        "gbm",
        "--train",
        "nb201:cifar10:40",
        "--out",
        str(tmp_path / "p"),
    )
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "predict",
        "--predictor",
        str(tmp_path / "p"),
        "--space",
        "nb201",
        "--arch",
        "best_cifar10",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    pred = json.loads(r.stdout)
    assert set(pred) >= {"mean", "std", "ood"} and 0 < pred["mean"] < 100
    r = run_cli(
        "predictor", "evaluate", "--predictor", "gbm", "--train", "nb999", "--test", "nb201:5"
    )
    assert r.returncode == 2 and r.stderr.startswith("nas: error:") and "nb999" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # Predictor options from the command line: JSON values where they parse, text otherwise.
    small = ("--option", "steps=5", "--option", "pretrain_steps=2", "--option", "hidden=8")
    r = run_cli(
        "predictor", "fit", "--predictor", "gennape", "--train", "nb201:cifar10:20",
        "--out", str(tmp_path / "g"), *small, "--option", "transfer=prior", "--option", "prior=flops",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "g" / "predictor.json").read_text())["options"]
    assert saved["steps"] == 5 and saved["hidden"] == 8
    assert saved["transfer"] == "prior" and saved["prior"] == "flops"
    # `nas predict` says how much of the learned part a prediction holds: all of it on the
    # space it was trained on, none (the compute prior alone) on another.
    for space, arch, share in (("nb201", "best_cifar10", 1.0), ("nbmacro", "22222222", 0.0)):
        r = run_cli("predict", "--predictor", str(tmp_path / "g"), "--space", space, "--arch", arch, "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["learned_share"] == share
    r = run_cli("predict", "--predictor", str(tmp_path / "g"), "--space", "nbmacro", "--arch", "22222222")  # fmt: skip
    assert r.returncode == 0 and "compute prior only" in r.stdout, r.stdout
    for bad, word in (("colour=red", "colour"), ("steps", "KEY=VALUE"), ("transfer=x", "transfer")):
        r = run_cli(
            "predictor", "evaluate", "--predictor", "gennape", "--train", "nb201:cifar10:20",
            "--test", "nb201:cifar10:10", "--option", bad,
        )  # fmt: skip
        assert r.returncode == 2 and word in r.stderr, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def test_fcm_refinement_keeps_cluster_identity_and_entropy_measures_spread():
    from nas.predictors.gennape.fcm import fuzzy_cmeans, membership_entropy, memberships

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 0.3, (40, 2)), rng.normal(3, 0.3, (40, 2))])
    start = np.array([[2.0, 2.0], [-2.0, -2.0]])  # deliberately in reverse order
    c, u = fuzzy_cmeans(x, 2, init=start)
    assert c[0, 0] > 2.5 and c[1, 0] < -2.5  # refined in place, not relabelled
    sharp = membership_entropy(u)
    far = memberships(x, np.array([[100.0, 100.0], [100.0, 100.1]]))
    assert sharp < 0.3 < 0.9 < membership_entropy(far)


def test_graf_features_and_family_standardisation():
    from nas.predictors.features import graph_features
    from nas.predictors.graf import NAMES, graf_features, standardise_by_family
    from nas.search_spaces import get_space

    space = get_space("nb201")
    cells = {
        "convs": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "skips": "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    }
    x = graf_features([graph_features(space.to_graph(space.parse(a))) for a in cells.values()])
    assert x.shape == (2, len(NAMES)) and np.all(np.isfinite(x))
    col = {n: i for i, n in enumerate(NAMES)}
    assert x[0, col["log_count_conv"]] > x[1, col["log_count_conv"]]
    assert x[0, col["longest_spatial_path"]] > x[1, col["longest_spatial_path"]]
    z = standardise_by_family(np.vstack([x, x + 5.0]), ["a", "a", "b", "b"])
    np.testing.assert_allclose(z[:2], z[2:])  # a shift of a whole family disappears
