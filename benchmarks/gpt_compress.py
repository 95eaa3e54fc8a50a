"""Compressing a trained dense gpt model to half its parameters, against training from scratch.

1. Train the space's largest child alone (a dense model) for ``--dense-steps``.
2. Rank its channels, heads, MLP units and layers by importance, sort them, and retrain
   the result as a supernet for ``--retrain-steps`` sandwich steps at ``--retrain-lr`` (the
   dense model teaches the children: in-place distillation).
3. Search children with at most ``--fraction`` of the dense model's parameters: random
   samples under the limit, then mutations of the best, scored by the supernet on
   ``--search-bytes`` validation bytes; the best few rescored on ``--eval-bytes``.
4. Train the best child's architecture from scratch (same batch, learning rate and
   schedule) for ``--retrain-steps`` steps and for ``--dense-steps + --retrain-steps``
   steps, and score everything on the same ``--eval-bytes`` validation bytes of the
   standard-library corpus (bits per byte).

Run: ``.venv/bin/python -m benchmarks.gpt_compress [--space gpt] [--dense-steps 600]
[--retrain-steps 300] [--retrain-lr 1e-3] [--samples 120] [--dense-cache FILE]``; writes
``benchmarks/results/gpt_compress.json`` (``--out`` elsewhere).
Quality numbers only (the wall times are recorded with the load average, not as speeds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "gpt_compress.json"


def _search(space, scorer, limit: int, samples: int, seed: int) -> list[tuple[float, Any]]:
    """Random children under the parameter limit, then two rounds of mutating the best."""
    rng = np.random.default_rng(seed)

    def params(g) -> int:
        return space.to_graph(g).params()

    seen: dict[Any, float] = {}

    def consider(g) -> None:
        if g not in seen and params(g) <= limit:
            seen[g] = scorer(g)

    tries = 0
    while len(seen) < samples // 2 and tries < 50 * samples:
        consider(space.sample(rng))
        tries += 1
    for _ in range(2):
        best = sorted(seen, key=seen.get)[:5]
        for g in best:
            for _ in range(samples // 20):
                consider(space.mutate(g, rng))
    return sorted(((v, g) for g, v in seen.items()), key=lambda t: t[0])


def _dense(space, corpus, args, common, out) -> Any:
    """Phase 1: the dense model (the largest child trained alone), or its cached file."""
    from nas.search_spaces.gpt.supernet import GPTSupernet
    from nas.search_spaces.gpt.train import SupernetConfig, SupernetTrainer

    from nas.lm import progress_bar

    sn = GPTSupernet(space, seed=args.seed)
    cache = Path(args.dense_cache) if args.dense_cache else None
    if cache is not None and cache.exists():
        sn.load(cache)
        out["dense_train"] = json.loads(cache.with_suffix(".json").read_text())
        return sn
    cfg = SupernetConfig(steps=args.dense_steps, random_children=-1, **common)
    with progress_bar(cfg.steps, "dense model") as tick:
        out["dense_train"] = SupernetTrainer(sn, cfg).fit(corpus, tick)
    if cache is not None:
        sn.save(cache)
        cache.with_suffix(".json").write_text(json.dumps(out["dense_train"]))
    return sn


def _elastic(sn, space, corpus, args, common, out) -> list[tuple[float, Any]]:
    """Phases 2-3: rank and sort, retrain as a supernet, search under the limit."""
    from nas.search_spaces.gpt.compress import importance, sort_by_importance
    from nas.search_spaces.gpt.train import ChildScorer, SupernetConfig, SupernetTrainer

    from nas.lm import LMConfig, progress_bar

    eval_cfg, search_cfg = (
        LMConfig(eval_bytes=args.eval_bytes),
        LMConfig(eval_bytes=args.search_bytes),
    )
    imp = importance(sn, corpus, batches=8, batch_size=args.batch_size, seed=args.seed)
    sort_by_importance(sn, imp)
    out["layer_importance"] = imp.layers.tolist()
    out["layer_rank"] = [int(r) for r in np.asarray(sn.layer_rank[...])]
    pruned = _search(
        space, ChildScorer(sn, corpus, search_cfg), out["param_limit"], args.samples // 2, 1
    )
    out["pruned_only"] = {
        "arch": pruned[0][1].to_str(),
        "bits_per_byte": ChildScorer(sn, corpus, eval_cfg)(pruned[0][1]),
    }
    cfg = SupernetConfig(
        steps=args.retrain_steps,
        random_children=2,
        dense_fraction=0.0,  # the dense model is trained already
        **{**common, "lr": args.retrain_lr},
    )
    with progress_bar(cfg.steps, "elastic retraining") as tick:
        out["retrain"] = SupernetTrainer(sn, cfg).fit(corpus, tick)
    full = ChildScorer(sn, corpus, eval_cfg)
    out["dense_after_retrain_bits_per_byte"] = full(space.known()["max"])
    found = _search(space, ChildScorer(sn, corpus, search_cfg), out["param_limit"], args.samples, 2)
    out["searched"] = len(found)
    return sorted(((full(g), g) for _, g in found[:5]), key=lambda t: t[0])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from nas.search_spaces import get_space
    from nas.search_spaces.gpt.train import ChildScorer

    from nas.corpus import load_stdlib
    from nas.lm import LMConfig, progress_bar, score_model, train_model
    from nas.model import build_model

    space = get_space(args.space)
    corpus = load_stdlib()
    common = {"batch_size": args.batch_size, "lr": args.lr, "warmup": 20, "seed": args.seed}
    largest = space.known()["max"]
    dense_params = space.to_graph(largest).params()
    out: dict[str, Any] = {
        "space": args.space,
        "space_settings": space.settings(),
        "corpus": corpus.summary(),
        "settings": vars(args),
        "dense_params": dense_params,
        "param_limit": int(args.fraction * dense_params),
    }
    t0 = time.perf_counter()
    eval_cfg = LMConfig(eval_bytes=args.eval_bytes)
    sn = _dense(space, corpus, args, common, out)
    out["dense_bits_per_byte"] = ChildScorer(sn, corpus, eval_cfg)(largest)
    finalists = _elastic(sn, space, corpus, args, common, out)
    best = finalists[0][1]
    out["compressed"] = {
        "arch": best.to_str(),
        "params": space.to_graph(best).params(),
        "bits_per_byte": score_model(sn.extract(best), corpus, eval_cfg),
        "supernet_bits_per_byte": finalists[0][0],
    }
    for name, steps in (
        ("scratch_same_steps", args.retrain_steps),
        ("scratch_total_steps", args.dense_steps + args.retrain_steps),
    ):
        model = build_model(space.to_graph(best), seed=args.seed)
        cfg = LMConfig(steps=steps, **common, eval_bytes=args.eval_bytes)
        with progress_bar(steps, f"from scratch ({steps} steps)") as tick:
            train = train_model(model, corpus, cfg, tick)
        out[name] = {
            "steps": steps,
            "train": train,
            "bits_per_byte": score_model(model, corpus, cfg),
        }
    out["seconds"] = time.perf_counter() - t0
    out["load_average"] = os.getloadavg()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="gpt")
    p.add_argument("--dense-steps", type=int, default=600)
    p.add_argument("--retrain-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--retrain-lr", type=float, default=1e-3)
    p.add_argument("--dense-cache", default="", help="dense model file: load it, or save it")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--search-bytes", type=int, default=16384)
    p.add_argument("--eval-bytes", type=int, default=262144)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    result = run(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    keys = ("dense_bits_per_byte", "compressed", "scratch_same_steps", "scratch_total_steps")
    print(json.dumps({k: result[k] for k in keys}, indent=1))


if __name__ == "__main__":
    main()
