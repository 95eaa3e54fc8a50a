"""Graphs shared by several test modules."""

from __future__ import annotations

from nas.graph import ArchGraph


def every_op_graph(classes: int = 5) -> ArchGraph:
    """One finalized graph that uses every op of the IR vocabulary (and a few variants:
    dilated grouped conv, asymmetric padding, dense over a map, max global pool)."""
    g = ArchGraph()
    x = g.add("input", shape=[8, 8, 4])
    y = g.add("conv", [x], out_channels=8, kernel=3, padding=1, dilation=1, bias=True)
    y = g.add("batch_norm", [y], affine=False)
    acts = [
        g.add(a, [y])
        for a in ("relu", "relu6", "sigmoid", "hsigmoid", "hswish", "swish", "tanh", "gelu")
    ]
    y = g.add("add", acts)
    y = g.add("channel_shuffle", [y], groups=2)
    lo = g.add("split", [y], start=0, size=4)
    hi = g.add("split", [y], start=4, size=4)
    se = g.add("global_pool", [hi], keepdims=True)
    se = g.add("conv", [se], out_channels=4, kernel=1, bias=True)
    hi = g.add("mul", [hi, se])
    y = g.add("concat", [lo, hi])
    y = g.add("batch_norm", [y])
    y = g.add("max_pool", [y], kernel=3, stride=2, padding=1)
    y = g.add("avg_pool", [y], kernel=3, stride=1, padding=1, count_include_pad=False)
    y = g.add("conv", [y], out_channels=8, kernel=3, padding=[0, 2, 1, 1], dilation=2, groups=4)
    z = g.add("zero", [y], stride=2, out_channels=8)
    y = g.add("conv", [y], out_channels=8, kernel=1, stride=2)
    y = g.add("add", [y, z])
    y = g.add("pad", [y], top=1, left=1)
    y = g.add("crop", [y], bottom=1, right=1)
    y = g.add("avg_pool", [y], kernel=2, stride=1, padding=1)
    y = g.add("dense", [y], out_features=6)  # a dense layer over a map's channels
    y = g.add("global_pool", [y], mode="max", keepdims=True)
    y = g.add("dropout", [g.add("flatten", [g.add("identity", [y])])], rate=0.1)
    y = g.add("dense", [y], out_features=classes)
    g.add("output", [g.add("add", [y, g.add("zero", [y])])])
    return g.finalize()


def token_ops_graph(vocab: int = 11, seq: int = 6) -> ArchGraph:
    """A tiny decoder over token ids with every sequence op a language model uses:
    embeddings, both norms, causal grouped-query attention, exact GELU, a gated MLP, dense
    layers over sequences, channel split/concat of a sequence and the tied output layer."""
    g = ArchGraph()
    ids = g.add("input", shape=[seq], dtype="int32")
    emb = g.add("embed", [ids], vocab=vocab, dim=8)
    x = g.add("pos_embed", [emb], max_len=seq + 2)
    x = g.add("segment_embed", [x])
    h = g.add("layer_norm", [x], eps=1e-6)
    q = g.add("dense", [h], out_features=8)
    k = g.add("dense", [h], out_features=4, bias=False)
    v = g.add("dense", [h], out_features=4)
    a = g.add("attention", [q, k, v], heads=4, kv_heads=2, causal=True)
    x = g.add("add", [x, g.add("dense", [a], out_features=8)])
    h = g.add("rms_norm", [x])
    gate = g.add("swish", [g.add("dense", [h], out_features=12, bias=False)])
    up = g.add("dense", [h], out_features=12, bias=False)
    m = g.add("gelu", [g.add("mul", [gate, up])], approximate=False)
    lo = g.add("split", [m], start=0, size=6)
    hi = g.add("split", [m], start=6, size=6)
    m = g.add("concat", [hi, lo])
    x = g.add("add", [x, g.add("dense", [m], out_features=8)])
    x = g.add("layer_norm", [x], bias=False)
    g.add("output", [g.add("unembed", [x], embedding=emb)])
    return g.finalize()


def image_tokens_graph(classes: int = 5) -> ArchGraph:
    """A tiny vision transformer: patches as tokens, a class token, learned positions,
    bidirectional attention, mean and class-token heads, a norm over a feature map."""
    g = ArchGraph()
    x = g.add("input", shape=[8, 8, 3])
    x = g.add("layer_norm", [g.add("conv", [x], out_channels=8, kernel=4, stride=4, bias=True)])
    x = g.add("cls_token", [g.add("tokens", [x])])
    x = g.add("pos_embed", [x], max_len=5)
    h = g.add("layer_norm", [x])
    qkv = [g.add("dense", [h], out_features=8) for _ in range(3)]
    x = g.add("add", [x, g.add("attention", qkv, heads=2)])
    cls = g.add("select_token", [x], index=0)
    mean = g.add("global_pool", [x])
    y = g.add("concat", [cls, mean])
    g.add("output", [g.add("dense", [g.add("tanh", [y])], out_features=classes)])
    return g.finalize()


def every_op_graphs() -> list[tuple[ArchGraph, tuple[int, ...]]]:
    """Graphs that together use every op of the vocabulary, with their batch input shapes."""
    return [
        (every_op_graph(), (3, 8, 8, 4)),
        (token_ops_graph(), (3, 6)),
        (image_tokens_graph(), (3, 8, 8, 3)),
    ]


def sample_input(graph: ArchGraph, shape: tuple[int, ...], seed: int = 0):
    """A random batch for ``graph``'s input: token ids below the vocabulary, else normals."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if graph.attrs(graph.input)["dtype"] == "int32":
        vocab = min(graph.attrs(n)["vocab"] for n in graph.g if graph.op(n) == "embed")
        return rng.integers(0, vocab, shape).astype(np.int32)
    return rng.normal(size=shape).astype(np.float32)


def random_model(graph: ArchGraph, seed: int = 0):
    """The IR-built model with random numpy weights (non-trivial biases, norm scales and
    running statistics, so parity tests mean something). Filling given weights runs no
    initialiser: eager initialisers compile once per weight shape, seconds per graph."""
    import numpy as np
    from flax import nnx

    from nas.model import GraphModel

    abstract = nnx.eval_shape(lambda: GraphModel(graph, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(seed)
    weights: dict[int, dict[str, np.ndarray]] = {}
    for key, layer in abstract.layers.items():
        for name in ("kernel", "bias", "scale", "mean", "var", "embedding"):
            var = getattr(layer, name, None)
            if not isinstance(var, nnx.Variable):
                continue
            shape = var.shape
            if name in ("scale", "var"):
                value = rng.uniform(0.5, 1.5, shape)
            elif name in ("bias", "mean"):
                value = rng.uniform(-0.5, 0.5, shape)
            else:
                fan_in = int(np.prod(shape[:-1])) if name == "kernel" else shape[-1]
                value = rng.normal(0, 1 / np.sqrt(max(fan_in, 1)), shape)
            weights.setdefault(int(key), {})[name] = value.astype(np.float32)
    return GraphModel(graph, rngs=nnx.Rngs(params=seed, dropout=seed + 1), weights=weights)


def jit_forward(model):
    """``model``'s forward as one compiled function (eager execution compiles every op)."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda st, x: nnx.merge(graphdef, st)(x))
    return lambda x: fn(state, x)
