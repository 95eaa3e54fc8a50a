"""BigNAS: the space, the supernet's BigNAS choices, sandwich training, children."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from nas.search_spaces import get_space  # noqa: E402
from nas.search_spaces.bignas.space import RESOLUTIONS, STAGES, BigNASSpace  # noqa: E402
from nas.search_spaces.bignas.supernet import BigNASSupernet, sandwich_archs  # noqa: E402
from nas.search_spaces.ofa import child as childmod  # noqa: E402
from nas.search_spaces.ofa.network import build  # noqa: E402
from nas.search_spaces.ofa.supernet import (  # noqa: E402
    ElasticBN,
    ElasticMBNet,
    NetLayout,
    StageLayout,
    SubnetChoice,
    choice_spec,
    encode_arch,
)
from nas.search_spaces.ofa.train import ElasticTrainConfig, ElasticTrainer  # noqa: E402

# A BigNAS-shaped toy: elastic stem/stage/head widths, centre-crop kernels, no feature mix.
TINY = NetLayout(
    in_channels=1,
    stem_width=16,
    stem_act="swish",
    stages=(
        StageLayout(16, 1, "swish", True, 2, (3,), 1),
        StageLayout(24, 2, "swish", True, 3, (3, 5), 6),
    ),
    head_width=48,
    head_act="swish",
    feature_mix=0,
    n_classes=10,
    kernel_transform=False,
)


def _choice(rng):
    return SubnetChoice(
        stem=int(rng.choice([8, 16])),
        widths=(int(rng.choice([8, 16])), int(rng.choice([16, 24]))),
        depths=(int(rng.integers(1, 3)), int(rng.integers(2, 4))),
        ks=(3, 3, *(int(rng.choice([3, 5])) for _ in range(3))),
        expand=(1, 1, *(int(rng.choice([4, 6])) for _ in range(3))),
        head=int(rng.choice([32, 40, 48])),
    )


def test_space_matches_table_1():
    space = get_space("bignas")
    assert isinstance(space, BigNASSpace)
    assert RESOLUTIONS == (192, 224, 256, 288, 320)
    assert [s.widths[0] for s in STAGES] == [16, 24, 40, 80, 112, 192, 320]
    assert [(min(s.depths), max(s.depths)) for s in STAGES] == [
        (1, 2),
        (2, 3),
        (2, 3),
        (2, 4),
        (2, 6),
        (2, 6),
        (1, 2),
    ]
    big, small = space.known()["max"], space.known()["min"]
    assert space.to_graph(big).flops() > 5 * space.to_graph(small).flops()
    g = space.sample(np.random.default_rng(0))
    assert space.parse(g.to_str()) == g


def test_tiny_elastic_width_children_equal_supernet():
    net = ElasticMBNet(TINY, seed=1)
    rng = np.random.default_rng(1)
    for _, m in nnx.iter_modules(net):
        if isinstance(m, ElasticBN):
            c = m.scale[...].shape[0]
            m.mean[...] = jnp.asarray(rng.normal(size=c) * 0.1, jnp.float32)
            m.var[...] = jnp.asarray(rng.uniform(0.5, 1.5, size=c), jnp.float32)
    net.eval()
    x = jnp.asarray(rng.normal(size=(2, 16, 16, 1)), jnp.float32)
    for _ in range(3):
        choice = _choice(rng)
        spec, ids = choice_spec(TINY, choice)
        model = childmod.child_model(net, build(spec, (16, 16, 1), ids))
        want = np.asarray(net(x, encode_arch(TINY, choice)))
        np.testing.assert_allclose(np.asarray(model(x)), want, atol=1e-5, rtol=1e-5)


def test_sandwich_training_on_tiny_layout_compiles_once():
    from nas.data import load_dataset

    data = load_dataset("digits")
    x16 = np.repeat(np.repeat(data.x_train, 2, 1), 2, 2)
    net = ElasticMBNet(TINY, seed=0)
    tr = ElasticTrainer(net, ElasticTrainConfig(steps=20, lr=1e-2))
    rng = np.random.default_rng(0)
    largest = encode_arch(TINY, net.max_choice())
    losses = []
    for _ in range(16):
        idx = rng.integers(0, len(x16), 64)
        archs = [largest] + [encode_arch(TINY, _choice(rng)) for _ in range(3)]
        for a in archs:
            a["drop"] = np.int32(a is largest)
        losses.append(tr.step(x16[idx], data.y_train[idx], archs, mode="sandwich")[0])
    assert tr.traces == 1
    assert np.mean(losses[-3:]) < np.mean(losses[:3])


def test_bignas_supernet_init_and_sandwich_archs():
    space = BigNASSpace()
    sn = BigNASSupernet(space, "digits")
    # the last BN of every residual block starts at gamma = 0; the first block of a stage not
    assert float(jnp.abs(sn.blocks[1].pl_bn.scale[...]).max()) == 0.0
    assert float(jnp.abs(sn.blocks[0].pl_bn.scale[...]).min()) == 1.0
    archs = sandwich_archs(sn, space, np.random.default_rng(0))
    assert len(archs) == 4
    assert [int(a["drop"]) for a in archs] == [1, 0, 0, 0]  # dropout on the largest only
    assert archs[0]["mid"].sum() > archs[1]["mid"].sum()
    g = space.known()["min"]
    graph = space.to_graph(g, "digits")
    ws = childmod.child_weights(sn, graph)
    n_param_nodes = sum(graph.op(n) in ("conv", "dense", "batch_norm") for n in graph.topological())
    assert len(ws) == n_param_nodes
