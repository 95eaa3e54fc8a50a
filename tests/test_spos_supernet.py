"""SPOS (blocks, and blocks with widths) and NAS-Bench-Macro weight-sharing supernets, the
supernet evaluator, SPOS evolution."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from nas.search_spaces import get_space
from nas.search_spaces.nbmacro import NBMacroSpace
from nas.search_spaces.spos import SPOSSpace
from nas.search_spaces.spos.supernet import SPOSSupernet

from nas.data import load_digits
from nas.errors import InvalidGenotype
from nas.evaluators import get_evaluator
from nas.evaluators.base import EvalResult
from nas.export import export_trial
from nas.objectives import parse_objectives
from nas.oneshot import (
    BN,
    Mode,
    PathEvaluator,
    SupernetConfig,
    SupernetTrainer,
    calibration_batches,
    extract_model,
)
from nas.searchers import Constrained, build_strategy
from tests.conftest import run_cli

SPOS_ARCH = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"


@pytest.fixture(scope="module")
def digits():
    return load_digits(0)


@pytest.fixture(scope="module")
def trained(digits):
    """A digits SPOS supernet after 20 steps on 20 different uniformly sampled paths."""
    model = SPOSSupernet("digits", seed=0)
    trainer = SupernetTrainer(model, SupernetConfig(steps=100, batch_size=32, lr=0.05))
    rng = np.random.default_rng(0)
    paths = [model.sample_path(rng) for _ in range(20)]
    losses = []
    for i, p in enumerate(paths):
        x, y = digits.x_train[32 * i : 32 * (i + 1)], digits.y_train[32 * i : 32 * (i + 1)]
        losses.append(float(trainer.step(x, y, p)[0]))
    return model, trainer, paths, losses


def test_one_compile_serves_20_paths(trained):
    model, trainer, paths, losses = trained
    assert len({tuple(p) for p in paths}) == 20
    assert trainer.traces == 1
    assert all(np.isfinite(losses))


def _kernel(block) -> np.ndarray:
    return np.asarray((block.pw if hasattr(block, "pw") else block.dw1).kernel[...]).copy()


def test_off_path_candidates_keep_their_weights(trained, digits):
    model, trainer, _, _ = trained
    cands = model.stages[0].first.candidates
    before = [_kernel(cands[b]) for b in range(4)]
    trainer.step(digits.x_train[:32], digits.y_train[:32], np.zeros(20, np.int32))
    after = [_kernel(cands[b]) for b in range(4)]
    assert trainer.traces == 1
    assert not np.allclose(before[0], after[0])  # on the path: trained
    for b in (1, 2, 3):  # off the path: untouched despite momentum from earlier steps
        np.testing.assert_array_equal(before[b], after[b])


@pytest.fixture(scope="module")
def spos_eval(trained, digits):
    model = trained[0]
    calib = calibration_batches(digits.x_train, 2, 64)
    return PathEvaluator(model, calib, digits.x_val[:100], digits.y_val[:100]), calib


def _bn_means(module) -> list[np.ndarray]:
    return [
        np.asarray(m.mean[...]).copy() for _, m in nnx.iter_modules(module) if isinstance(m, BN)
    ]


def test_bn_recalibration_resets_and_recomputes_statistics(trained, spos_eval):
    model, _, paths, _ = trained
    ev, calib = spos_eval
    before = _bn_means(model.first_conv)
    ev.recalibrate(paths[0])
    after = _bn_means(model.first_conv)
    assert not np.allclose(before[0], after[0])
    # the first conv's BN now holds the average of the two calibration batches' means
    k = model.first_conv.kernel[...]
    means = [
        np.asarray(
            jax.lax.conv_general_dilated(
                jnp.asarray(b),
                k,
                (1, 1),
                ((1, 1), (1, 1)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            ).mean((0, 1, 2))
        )
        for b in calib
    ]
    np.testing.assert_allclose(after[0], np.mean(means, 0), rtol=1e-4, atol=1e-5)
    accs = [ev(p) for p in paths[:3]]
    assert all(0.0 <= a <= 100.0 for a in accs)
    assert ev.traces == 3  # reset, calibration, evaluation: one compile each for every path
    off = next(b for b in range(4) if b != paths[2][0])  # layer 0 candidate off the last path
    np.testing.assert_array_equal(
        _bn_means(model.stages[0].first.candidates[off])[0],
        np.zeros_like(_bn_means(model.stages[0].first.candidates[off])[0]),
    )


_forward = nnx.jit(lambda m, x, p: m(x, p, Mode(False)))
_standalone = nnx.jit(lambda m, x: m(x))


def test_inherited_weights_equal_the_standalone_ir_model(trained, spos_eval, digits):
    model = trained[0]
    ev, _ = spos_eval
    space = SPOSSpace()
    geno = space.parse(SPOS_ARCH)
    path = model.path_of(geno)
    ev.recalibrate(path)
    x = jnp.asarray(digits.x_val[:16])
    ours = np.asarray(_forward(model, x, jnp.asarray(path)))
    theirs = np.asarray(_standalone(extract_model(model, space.to_graph(geno, "digits"), path), x))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ SPOS evolution


def _onemax_result(space, g) -> EvalResult:
    # the optimum, all mb3_k3 (803,904 MACs), is within the FLOPs limit; all mb6_k5 is not
    return EvalResult(metrics={"accuracy": float(sum(i == 1 for i in space.to_indices(g)))})


def test_spos_evolution_climbs_and_respects_a_flops_limit():
    space = NBMacroSpace()
    inner = build_strategy(
        "spos-evolution",
        space,
        parse_objectives("accuracy"),
        seed=0,
        options=dict(population=20, select_num=5, mutation_num=8, crossover_num=8),
    )
    limit = 1_000_000

    def cost(g):
        gr = space.to_graph(g, "digits")
        return {"flops": gr.flops(), "params": gr.params()}

    s = Constrained(inner, cost, {"flops": limit})
    scores = []
    for _ in range(100):
        g = s.ask()
        assert cost(g)["flops"] <= limit
        r = _onemax_result(space, g)
        s.tell(g, (r.accuracy,))
        scores.append(r.accuracy)
    # selection pressure: later generations score higher than the random first one
    assert np.mean(scores[80:]) > np.mean(scores[:20]) + 1.5
    assert max(scores) >= 7
    state = json.loads(json.dumps(s.state_dict()))
    assert state["inner"]["inner"]["generation"] >= 3


MACRO_OPTS = ("--steps", "4", "--seed", "0")


@pytest.fixture(scope="module")
def macro_run(tmp_path_factory):
    """``nas search`` with SPOS evolution over a NAS-Bench-Macro supernet, under a FLOPs limit."""
    out = tmp_path_factory.mktemp("macro") / "run"
    r = run_cli(
        "search",
        "--space",
        "nbmacro",
        "--strategy",
        "spos-evolution",
        "--evaluator",
        "supernet",
        "--dataset",
        "digits",
        "--max-flops",
        "500K",
        "--budget",
        "4",
        *MACRO_OPTS,
        "--out",
        str(out),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout.strip().splitlines()[-1])


def test_cli_search_with_the_supernet_evaluator_end_to_end(macro_run, tmp_path):
    out, res = macro_run
    assert res["n_trials"] == 4 and res["n_failed"] == 0
    assert res["best_cost"]["flops"] <= 500_000
    assert len(list((out / "supernet").glob("*.safetensors"))) == 1
    doc = export_trial(res["storage"], res["study"], "best", "json", tmp_path / "best")
    assert doc["genotype"]["arch"] == res["best_arch"]
    assert (tmp_path / "best" / "arch.json").exists()


def test_supernet_evaluator_reuses_the_run_folders_supernet(macro_run, digits):
    out, res = macro_run
    space = NBMacroSpace()
    ev = get_evaluator("supernet", space, "digits", run_dir=out, steps=4, seed=0)
    saved = ev.supernet_file()
    assert saved.exists()
    # a setting that changes the weights names another file; one that does not, the same
    assert get_evaluator("supernet", space, "digits", run_dir=out, steps=5).supernet_file() != saved
    same = get_evaluator("supernet", space, "digits", run_dir=out, steps=4, calib_batches=9)
    assert same.supernet_file() == saved
    mtime = saved.stat().st_mtime
    geno = space.parse(res["best_arch"])
    r = ev.evaluate(geno)
    assert saved.stat().st_mtime == mtime  # loaded, not retrained
    assert ev.train_summary == json.loads(saved.with_suffix(".json").read_text())["train"]
    assert r.accuracy == pytest.approx(res["best_metrics"]["accuracy"], abs=1e-6)
    graph = space.to_graph(geno, "digits")
    assert r.cost == {"params": graph.params(), "flops": graph.flops()}
    # the path's inherited weights, copied into the standalone IR model, compute the same
    model = ev.supernet().model
    path = model.path_of(geno)
    ev.calibrate(geno)
    x = jnp.asarray(digits.x_val[:8])
    ours = np.asarray(_forward(model, x, jnp.asarray(path)))
    theirs = np.asarray(_standalone(extract_model(model, graph, path), x))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ SPOS channel search


@pytest.fixture(scope="module")
def channel_net():
    """A digits SPOS supernet with channel search (max-width weights, masked widths)."""
    return SPOSSupernet("digits", seed=1, channel_search=True)


def _channel_path(blocks, scales) -> np.ndarray:
    return np.asarray(list(blocks) + list(scales), np.int32)


def test_channel_search_gives_masked_hidden_channels_zero_gradients(channel_net):
    layer = channel_net.stages[0].first  # layer 0: 8 -> 16 channels, hidden widths up to 16
    assert layer.widths == (1, 3, 4, 6, 8, 9, 11, 12, 14, 16)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 8, 8, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(8, 8, 8, 16)), jnp.float32)

    @nnx.jit
    def grads_of(layer, index):
        return nnx.grad(lambda m: jnp.sum(m(x, index, Mode(True)) * w))(layer)

    for block_id, scale in ((0, 5), (3, 2)):  # shuffle3x3 at 9 channels, xception at 4
        width = layer.widths[scale]
        grads = grads_of(layer, jnp.array([block_id, scale]))["candidates"]
        block = layer.candidates[block_id]
        for name in block.main:  # every conv and BN of the main branch
            g = {k: np.asarray(v[...]) for k, v in nnx.to_flat_state(grads[block_id][name])}
            cut_in, cut_out = block.cuts(name)
            kernel = g[("kernel",)]
            assert np.abs(kernel).sum() > 0, name
            if cut_out:  # a hidden layer: only its first `width` channels learn
                for k, v in g.items():
                    assert np.all(v[..., width:] == 0), (name, k)
                    if k == ("bn", "bias") and not getattr(block, name).relu:
                        # a BN shift feeding a conv + batch-statistics BN: its gradient is
                        # zero up to rounding, so only the masking above is checked
                        continue
                    active = np.abs(v[..., :width]).sum(tuple(range(v.ndim - 1)))
                    assert np.all(active > 0), (name, k, block_id)
            if cut_in:  # reads the hidden layer: only its first `width` input channels learn
                assert np.all(kernel[:, :, width:] == 0) and np.all(kernel[:, :, :width].any(3))
        for other in set(range(4)) - {block_id}:  # the other candidates get no gradient
            leaves = jax.tree.leaves(grads[other])
            assert all(not np.asarray(v).any() for v in leaves)


def test_channel_search_path_equals_the_standalone_model_with_its_widths(channel_net, digits):
    model = channel_net
    space = get_space("spos-channels")
    rng = np.random.default_rng(5)
    blocks, scales = rng.integers(4, size=20), rng.integers(10, size=20)
    blocks[[0, 1, 4, 9]] = 3  # xception as a stage's first and a later (scanned) layer
    scales[[0, 1, 4, 9]] = (0, 9, 2, 7)  # the narrowest and the widest width among them
    geno = space.from_indices(list(blocks) + list(scales))
    assert not geno.default_width
    path = model.path_of(geno)
    np.testing.assert_array_equal(path, _channel_path(blocks, scales))
    traces = []

    @nnx.jit
    def forward(m, x, p):
        traces.append(1)
        return m(x, p, Mode(False))

    x = jnp.asarray(digits.x_val[:16])
    ours = np.asarray(forward(model, x, jnp.asarray(path)))
    theirs = np.asarray(_standalone(extract_model(model, space.to_graph(geno, "digits"), path), x))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    # one compile serves every path and width; the widths matter
    for other in (_channel_path(blocks, (scales + 3) % 10), model.sample_path(rng)):
        assert not np.allclose(ours, np.asarray(forward(model, x, jnp.asarray(other))), atol=1e-3)
    assert len(traces) == 1


def test_block_only_supernet_refuses_width_scales():
    model = SPOSSupernet("digits", seed=0)
    geno = get_space("spos-channels").from_indices([0] * 20 + [2] * 20)
    with pytest.raises(InvalidGenotype, match="channel_search=True"):
        model.path_of(geno)


@pytest.mark.slow
def test_channel_search_training_step_compiles_once_and_spares_masked_channels(digits):
    """Supernet training and BN recalibration over paths of every block and width."""
    model = SPOSSupernet("digits", seed=2, channel_search=True)
    cfg = SupernetConfig(steps=100, batch_size=32, lr=0.05, weight_decay=0.0)
    trainer = SupernetTrainer(model, cfg)
    block = model.stages[0].first.candidates[0]  # layer 0, shuffle3x3

    def snap():
        return {n: np.asarray(getattr(block, n).kernel[...]).copy() for n in ("pw", "pwl")}

    rng = np.random.default_rng(1)
    blocks, scales = rng.integers(4, size=20), rng.integers(10, size=20)
    blocks[0], scales[0] = 0, 5  # layer 0 at scale 1.2: 9 of 16 hidden channels
    x, y = digits.x_train[:32], digits.y_train[:32]
    b0 = snap()
    trainer.step(x, y, _channel_path(blocks, scales))
    b1 = snap()
    assert not np.array_equal(b0["pw"][..., :9], b1["pw"][..., :9])
    np.testing.assert_array_equal(b0["pw"][..., 9:], b1["pw"][..., 9:])
    np.testing.assert_array_equal(b0["pwl"][:, :, 9:], b1["pwl"][:, :, 9:])
    # Narrower on the same block (4 channels): as PyTorch's SGD does for a sliced max-width
    # tensor, channels 4..8 keep moving by their momentum (they have no gradient now);
    # channels 9.. never had a gradient and stay put (no weight decay here).
    scales[0] = 2
    trainer.step(x, y, _channel_path(blocks, scales))
    b2 = snap()
    assert not np.allclose(b1["pw"][..., 4:9], b2["pw"][..., 4:9])
    np.testing.assert_array_equal(b1["pw"][..., 9:], b2["pw"][..., 9:])
    paths = [model.sample_path(rng) for _ in range(6)]
    assert len({tuple(p[20:]) for p in paths}) == 6
    losses = [float(trainer.step(x, y, p)[0]) for p in paths]
    assert trainer.traces == 1 and all(np.isfinite(losses))
    calib = calibration_batches(digits.x_train, 2, 64)
    ev = PathEvaluator(model, calib, digits.x_val[:100], digits.y_val[:100])
    accs = [ev(p) for p in paths[:3]]
    assert all(0.0 <= a <= 100.0 for a in accs)
    assert ev.traces == 3  # reset, calibration, evaluation: one compile each for every width


@pytest.mark.slow
def test_cli_search_over_spos_widths_end_to_end(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "search",
        "--space",
        "spos-channels",
        "--strategy",
        "spos-evolution",
        "--evaluator",
        "supernet",
        "--dataset",
        "digits",
        "--max-flops",
        "700K",
        "--budget",
        "4",
        *MACRO_OPTS,
        "--out",
        str(out),
        "--no-progress",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n_trials"] == 4 and res["n_failed"] == 0
    assert res["best_cost"]["flops"] <= 700_000
    best = get_space("spos-channels").parse(res["best_arch"])
    assert not best.default_width  # the searcher proposed widths, the supernet scored them
    files = list((out / "supernet").glob("*.safetensors"))
    assert len(files) == 1 and files[0].name.startswith("spos-channels-digits-")
