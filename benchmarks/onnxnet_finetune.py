"""ONNX-Net with its text encoder fine-tuned end to end: NB201, 100 training architectures.

Issue 23 part 2 asks whether fine-tuning the sentence encoder with the ranking head beats
the frozen encoder. Per seed (the splits of :mod:`benchmarks.onnxnet_options`): fit the
default predictor (``nodes`` mode, frozen MiniLM) and score it; then continue training from
that state for ``--steps`` steps in two ways, scored on the same test cells:

* ``heads only``: the heads alone (the control: what the extra steps give by themselves);
* ``last layer``: the heads and MiniLM's last ``--layers`` transformer layer(s) jointly
  (``--layers 6``: the whole encoder but its embeddings), the encoder at ``--encoder-lr``.

In ``nodes`` mode a network's text features are linear in its line embeddings (the mean and
the depth-weighted mean) or bilinear (the mean over edges of the two ends' product), so
each step re-embeds only the distinct lines (about 140 for NB201, at 32 tokens) through the
trained layers (the frozen layers' outputs are computed once) and pools them with
per-network count matrices. Standardisation keeps the frozen model's statistics. CPU
seconds of the fine-tuning are reported with each row.

Run: ``.venv/bin/python -m benchmarks.onnxnet_finetune [--seeds 0,1,2] [--steps 60]
[--layers 1] [--encoder-lr 1e-5]``; runs in ``benchmarks/results/onnxnet_finetune.json``
(one per setting). The encoder's learning rate must be small: the text features are
standardised across networks whose line embeddings differ little, so a small change of the
encoder is a large change of the head's inputs (at 1e-4, three steps cost 0.04 tau).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "onnxnet_finetune.json"
BUCKET = 32


def _structure(graphs) -> tuple[list[str], list[tuple[np.ndarray, ...]]]:
    """The distinct lines and, per graph, (line ids, senders, receivers, depth shares)."""
    from nas.predictors.onnxnet.nodes import _graph, depth_share, node_lines

    vocab: dict[str, int] = {}
    out = []
    for g in graphs:
        lines, snd, rcv = node_lines(_graph(g))
        ids = np.array([vocab.setdefault(x, len(vocab)) for x in lines])
        out.append((ids, snd, rcv, depth_share(len(lines), snd, rcv)))
    return list(vocab), out


def _pool_matrices(structs, n_vocab: int):
    """Count matrices so that the pooled features are ``[M @ E, Q @ (E[a] * E[b]), D @ E]``."""
    pairs: dict[tuple[int, int], int] = {}
    mean = np.zeros((len(structs), n_vocab), np.float32)
    deep = np.zeros_like(mean)
    q_rows = []
    for gi, (ids, snd, rcv, d) in enumerate(structs):
        np.add.at(mean[gi], ids, 1.0 / len(ids))
        np.add.at(deep[gi], ids, d / max(d.sum(), 1e-9))
        edges = zip(ids[snd].tolist(), ids[rcv].tolist(), strict=True)
        q_rows.append([pairs.setdefault(e, len(pairs)) for e in edges])
    q = np.zeros((len(structs), len(pairs)), np.float32)
    for gi, r in enumerate(q_rows):
        np.add.at(q[gi], r, 1.0 / max(len(r), 1))
    ab = np.array(list(pairs), np.int32).reshape(-1, 2)
    return mean, q, deep, ab


def run_seed(seed: int, train, test, steps: int, layers: int, encoder_lr: float) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from nas.predictors.base import get_predictor
    from nas.predictors.features import features
    from nas.predictors.onnxnet.encoder import LAYERS, MiniLM, bert_embed, bert_layer, mean_pool
    from nas.predictors.onnxnet.head import scores
    from scipy.stats import kendalltau

    p = get_predictor("onnxnet", seed=seed, mode="nodes")
    p.fit(train.graphs, train.y, train.groups)
    row: dict[str, Any] = {
        "seed": seed,
        "frozen": float(kendalltau(p.predict(test.graphs)[0], test.y)[0]),
    }
    graphs = list(train.graphs) + list(test.graphs)
    vocab, structs = _structure(graphs)
    mats = _pool_matrices(structs, len(vocab))
    enc = MiniLM.load()
    ids = enc.token_ids(vocab)
    tok = np.zeros((len(vocab), BUCKET), np.int32)
    mask = np.zeros_like(tok)
    for i, x in enumerate(ids):
        x = x[:BUCKET]  # node lines are shorter (longest NB201 line: 23 tokens)
        tok[i, : len(x)], mask[i, : len(x)] = x, 1
    first = LAYERS - layers
    x0 = bert_embed(enc.params, jnp.asarray(tok))
    for i in range(first):
        x0 = bert_layer(enc.params, i, x0, jnp.asarray(mask))
    tuned = {
        k: v for k, v in enc.params.items() if any(f"layer.{i}." in k for i in range(first, LAYERS))
    }
    mean, q, deep, ab = (jnp.asarray(m) for m in mats)
    feats = p.featurize(graphs)  # frozen text features, then the numbers
    width = 3 * 384
    numbers = jnp.asarray(p._standardise(feats)[:, width:])
    mu, sd = jnp.asarray(p.mu[:width]), jnp.asarray(p.sd[:width])
    ir = features(graphs)
    prior = jnp.asarray(p._prior_of(ir, len(graphs)))
    maskj = jnp.asarray(mask)
    n = len(train)
    part = {
        "train": (mean[:n], q[:n], deep[:n], numbers[:n]),
        "test": (mean[n:], q[n:], deep[n:], numbers[n:]),
    }

    def inputs(enc_p, which):
        m, qq, dd, nums = part[which]
        h = x0
        for i in range(first, LAYERS):
            h = bert_layer(enc_p, i, h, maskj)
        e = mean_pool(h, maskj)
        text = jnp.concatenate([m @ e, qq @ (e[ab[:, 0]] * e[ab[:, 1]]), dd @ e], 1)
        return jnp.concatenate([(text - mu) / sd, nums], 1)

    y = np.asarray(train.y)
    rng = np.random.default_rng(seed)
    opt_h = optax.adamw(1e-3, weight_decay=1e-2)
    opt_e = optax.adamw(encoder_lr, weight_decay=1e-2)
    x_frozen = inputs(tuned, "train")

    def loss_fn(heads, enc_p, i, j, w, use_enc):
        xx = inputs(enc_p, "train") if use_enc else x_frozen
        s = scores(heads, xx, prior[:n])
        diff = jnp.take_along_axis(s, i, 1) - jnp.take_along_axis(s, j, 1)
        return jnp.mean(w * jax.nn.softplus(-diff))

    grad = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)), static_argnums=5)
    for name, use_enc in (("heads only", False), ("last layer", True)):
        heads = {k: jnp.asarray(v) for k, v in p.params.items()}
        enc_p = dict(tuned)
        sh, se = opt_h.init(heads), opt_e.init(enc_p)
        c0 = time.process_time()
        for _ in range(steps):
            a, b = rng.integers(n, size=(2, len(heads["b2"]), 2048))
            better = y[a] >= y[b]
            i, j = np.where(better, a, b), np.where(better, b, a)
            w = (y[i] != y[j]).astype(np.float32)
            _, (gh, ge) = grad(heads, enc_p, *map(jnp.asarray, (i, j, w)), use_enc)
            uh, sh = opt_h.update(gh, sh, heads)
            heads = optax.apply_updates(heads, uh)
            if use_enc:
                ue, se = opt_e.update(ge, se, enc_p)
                enc_p = optax.apply_updates(enc_p, ue)
        s = np.asarray(scores(heads, inputs(enc_p, "test"), prior[n:])).mean(0)
        row[name] = float(kendalltau(s, test.y)[0])
        row[f"{name} cpu_seconds"] = time.process_time() - c0
    return row


def main(argv: list[str] | None = None) -> None:
    from benchmarks.onnxnet_options import splits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--encoder-lr", type=float, default=1e-5)
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed, train, test in splits(seeds):
        rows.append(run_seed(seed, train, test, args.steps, args.layers, args.encoder_lr))
        print(json.dumps(rows[-1]), flush=True)
    keys = ("frozen", "heads only", "last layer")
    run = {
        "command": "python -m benchmarks.onnxnet_finetune " + " ".join(argv or []),
        "settings": vars(args),
        "rows": rows,
        "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
        "loadavg": os.getloadavg()[0],
    }
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"runs": []}
    doc["runs"] = [r for r in doc["runs"] if r["settings"] != run["settings"]] + [run]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(run["mean"]))


if __name__ == "__main__":
    main()
