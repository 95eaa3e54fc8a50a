"""Leave one family out: train on three labelled benchmark families, rank the fourth.

The yardstick of transfer (issue 23, part 2). Families: NB101 and NB301 (NASLib's 500
cells each), NB201 (CIFAR-10) and NAS-Bench-Macro (``--size`` cells each, drawn per seed).
For every held-out family and seed, each method is trained on the other three and scored
on the fourth by Kendall tau, reporting:

* ``prior``: the compute prior alone (:mod:`nas.predictors.gennape.prior`, ``flops_depth``:
  log live MACs plus a fitted multiple of log spatial depth), fitted on the three families;
* ``learned``: the learned part alone;
* ``combined``: prior plus the learned part times the share chosen *without* the held-out
  labels: leave-one-family-out among the three training families
  (:func:`nas.predictors.transfer.unseen_share`: the share whose worst training family gains
  most at the 10% bootstrap quantile, 0 when none gains), and ``combined_full`` with the
  whole learned part, for reference.

Methods: ``gennape`` (the default predictor; its ``transfer="lofo"`` makes exactly this
choice), ``graf`` (GRAF-style graph statistics, :mod:`nas.predictors.graf`, standardised
within each family on that family's architectures without labels, optionally with log
synflow, into gradient-boosted trees on per-family standardised accuracy), and, with both
parts z-scored within the ranked family before they are mixed:

* ``graf-zc``: the statistics and zero-cost proxies (``--proxies``, cached per architecture:
  :func:`nas.predictors.graf.proxy_scores`) *ranked* within each family, into the same
  trees; ``-rank``: on per-family accuracy ranks; ``-prior``: the prior's score (ranked) as
  one more input; ``-resid``: the trees fit what the prior leaves; ``-linear``: a linear
  score by a pairwise ranking loss; ``-linear-few``: the same on the proxies and five
  statistics (:data:`benchmarks.predictors_lofo_methods.FEW`);
* ``mlp``: the ranking MLP of :mod:`nas.predictors.pretrain`; ``mlp-pretrain``: the same,
  first pretrained FBNetV3-style on free statistics of the labelled architectures and
  ``--pool`` random ones from each of eight spaces; ``-resid``: fine-tuned as a residual of
  the prior.

Goal: ``combined`` beats ``prior`` by at least +0.03 mean Kendall tau on at least 3 of the 4
held-out families. Run: ``.venv/bin/python -m benchmarks.predictors_lofo [--seeds 0,1,2]
[--methods gennape graf graf-zc mlp-pretrain ...] [--size 1000] [--synflow]``; results in
``benchmarks/results/predictors_lofo.json`` (rows are kept across runs by method, family and
seed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "predictors_lofo.json"
FAMILIES = ("nb101", "nb201", "nb301", "nbmacro")
GOAL = 0.03


def _specs(size: int) -> dict[str, str]:
    return {
        "nb101": "nb101",
        "nb201": f"nb201:cifar10:{size}",
        "nb301": "nb301",
        "nbmacro": f"nbmacro:{size}",
    }


def _tau(a, b) -> float:
    from nas.predictors.evaluate import rank_metrics

    return rank_metrics(np.asarray(a, np.float64), np.asarray(b, np.float64))["kendall_tau"]


def load(size: int, seed: int):
    from nas.predictors.data import LabelledSet, load_spec

    sets = [load_spec(s, seed=seed) for s in _specs(size).values()]
    return LabelledSet.concat(sets)


def run_gennape(data, held: str, seed: int) -> dict[str, Any]:
    """GENNAPE on the three families, the share chosen as ``transfer="lofo"`` chooses it
    (:func:`nas.predictors.transfer.unseen_share`); the inner fits' outputs are kept
    (``PARTS``) so that other share rules can be compared without refitting."""
    from nas.predictors.base import get_predictor
    from nas.predictors.features import features
    from nas.predictors.transfer import unseen_share

    fam = np.array(data.groups)
    tr, te = np.flatnonzero(fam != held), np.flatnonzero(fam == held)
    graphs = [data.graphs[i] for i in tr]
    y_tr, g_tr = data.y[tr], [data.groups[i] for i in tr]
    p = get_predictor("gennape", seed=seed, transfer="full")
    p.fit(graphs, y_tr, g_tr)
    inner: dict[str, dict[str, list]] = {}

    def parts(train: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sub = get_predictor("gennape", seed=seed, transfer="full")
        sub.fit([graphs[i] for i in train], y_tr[train], [g_tr[i] for i in train])
        prior, learned = sub._parts(features([graphs[i] for i in out]))
        inner[g_tr[out[0]]] = {"prior": prior.tolist(), "learned": learned.tolist(),
                               "y": y_tr[out].tolist()}  # fmt: skip
        return prior, learned

    share = unseen_share(g_tr, y_tr, parts, seed)
    dec = p.decompose([data.graphs[i] for i in te])
    y = data.y[te]
    PARTS[(held, seed)] = {
        "held": {"prior": dec.prior.tolist(), "learned": dec.learned.tolist(), "y": y.tolist()},
        "inner": inner,
    }
    return {
        "prior": _tau(dec.prior, y),
        "learned": _tau(dec.learned, y),
        "share": float(share),
        "combined": _tau(dec.prior + share * dec.learned, y),
        "combined_full": _tau(dec.prior + dec.learned, y),
    }


PARTS: dict[tuple[str, int], dict[str, Any]] = {}
"""Per (held-out family, seed): the prior and learned parts on the held-out family and on
each inner held-out family, written to ``predictors_lofo_parts.json``."""


def _graf_matrix(data, synflow: bool) -> np.ndarray:
    from nas.predictors.features import features
    from nas.predictors.graf import graf_features, proxy_scores, standardise_by_family

    x = graf_features(features(data.graphs))
    if synflow:
        x = np.hstack([x, proxy_scores(data.graphs, ["synflow"], progress=True)])
    return standardise_by_family(x, data.groups)


def _z(v: np.ndarray) -> np.ndarray:
    """A z-score over one family's architectures (no labels): puts the prior and the
    learned part on one scale before they are mixed."""
    sd = v.std()
    return (v - v.mean()) / (sd if sd > 1e-12 else 1.0)


def run_learned(data, held: str, seed: int, learner, scale: str = "") -> dict[str, Any]:
    """The prior, ``learner(train, out, prior)`` (predictions on indices ``out`` of a model
    trained on indices ``train``; ``prior`` is the prior fitted on ``train``) and their
    combinations for one held-out family. ``scale``: ``"both"`` z-scores both parts within
    the ranked family before mixing, ``"prior"`` only the prior (for a learned part that
    was trained as a residual of the z-scored prior), ``""`` neither."""
    from nas.predictors.features import features
    from nas.predictors.transfer import fit_prior, unseen_share

    fam = np.array(data.groups)
    feats = features(data.graphs)
    keep = lambda v: v  # noqa: E731
    norm_p, norm_l = {"both": (_z, _z), "prior": (_z, keep), "": (keep, keep)}[scale]

    def prior_on(idx):
        return fit_prior("flops_depth", [feats[i] for i in idx], data.y[idx], list(fam[idx]), seed)

    kept: dict[str, dict[str, list]] = {}

    def both(train, out):
        prior = prior_on(train)
        p, q = norm_p(prior([feats[i] for i in out])), norm_l(learner(train, out, prior))
        kept[fam[out[0]]] = {"prior": p.tolist(), "learned": q.tolist(), "y": data.y[out].tolist()}
        return p, q

    tr, te = np.flatnonzero(fam != held), np.flatnonzero(fam == held)
    share = unseen_share(list(fam[tr]), data.y[tr], lambda a, b: both(tr[a], tr[b]), seed)
    prior, learned = both(tr, te)
    y = data.y[te]
    return {
        "_parts": kept,
        "prior": _tau(prior, y),
        "learned": _tau(learned, y),
        "share": share,
        "combined": _tau(prior + share * learned, y),
        "combined_full": _tau(prior + learned, y),
    }


def _gbm(x: np.ndarray, target: np.ndarray, seed: int):
    from sklearn.ensemble import GradientBoostingRegressor

    def learner(train, out, prior):
        gbm = GradientBoostingRegressor(
            n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
        )
        return gbm.fit(x[train], target[train]).predict(x[out])

    return learner


def run_graf(data, held: str, seed: int, synflow: bool) -> dict[str, Any]:
    """GRAF statistics z-scored per family (optionally with log synflow) into gradient
    boosting on per-family standardised accuracy."""
    from nas.predictors.transfer import standardise

    ys, _ = standardise(data.y, list(data.groups))
    return run_learned(data, held, seed, _gbm(_graf_matrix(data, synflow), ys, seed))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in sorted({r["method"] for r in rows}):
        per = {}
        for fam in FAMILIES:
            rs = [r for r in rows if r["method"] == method and r["held_out"] == fam]
            if not rs:
                continue
            mean = {
                k: float(np.mean([r[k] for r in rs]))
                for k in ("prior", "learned", "combined", "combined_full", "share")
            }
            mean["seeds"] = sorted(r["seed"] for r in rs)
            mean["gain"] = mean["combined"] - mean["prior"]
            per[fam] = mean
        met = sum(v["gain"] >= GOAL for v in per.values())
        out[method] = {
            "families": per,
            "families_with_gain_at_least_0.03": met,
            "goal_met": met >= 3,
        }
    return out


METHODS = ("graf", "gennape", "graf-zc", "graf-zc-rank", "graf-zc-prior", "graf-zc-resid", "graf-zc-linear", "graf-zc-linear-few",
           "mlp", "mlp-pretrain", "mlp-resid", "mlp-pretrain-resid")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from nas.predictors.pretrain import pretrain_pool

    from benchmarks.predictors_lofo_methods import run_graf_zc, run_mlp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", nargs="+", default=["graf", "gennape"], choices=METHODS)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--size", type=int, default=1000, help="NB201 and NAS-Bench-Macro cells")
    ap.add_argument("--synflow", action="store_true", help="log synflow beside GRAF")
    ap.add_argument("--proxies", default="synflow", help="zero-cost proxies of graf-zc*")
    ap.add_argument("--pool", type=int, default=600, help="unlabelled archs per space")
    ap.add_argument("--out", type=Path, default=OUT, help="results file")
    ap.add_argument("--parts", type=Path, default=PARTS_DIR, help="where the parts go")
    args = ap.parse_args(argv)
    proxies = [p for p in args.proxies.split(",") if p]
    for seed in (int(s) for s in args.seeds.split(",")):
        data = load(args.size, seed)
        pretrain = any(m.startswith("mlp-pretrain") for m in args.methods)
        pool = pretrain_pool(data.graphs, data.groups, args.pool) if pretrain else None
        for method in args.methods:
            for held in args.families:
                t0 = time.time()
                label = method
                if method == "gennape":
                    r = run_gennape(data, held, seed)
                elif method == "graf":
                    r = run_graf(data, held, seed, args.synflow)
                    label += "+synflow" if args.synflow else ""
                elif method.startswith("graf-"):
                    r = run_graf_zc(data, held, seed, method[5:], proxies)
                    label += "" if proxies == ["synflow"] else f"[{','.join(proxies)}]"
                else:
                    r = run_mlp(
                        data, held, seed, pool if "pretrain" in method else None,
                        resid=method.endswith("resid"),
                    )  # fmt: skip
                _keep_parts(args.parts / f"{label}.json", held, seed, r.pop("_parts", None))
                row = {"method": label, "held_out": held, "seed": seed, "size": args.size, **r}
                row["seconds"] = time.time() - t0
                row["loadavg"] = os.getloadavg()[0]
                print(json.dumps(row), flush=True)
                _record(row, (held, seed), args.out)
    print(json.dumps(summarize(json.loads(args.out.read_text())["rows"]), indent=1))


PARTS_DIR = Path("runs") / "lofo_parts"
"""Where the parts (prior, learned, labels) of every inner and outer held-out family of
the GRAF-style and MLP methods go, one JSON per method (not committed: megabytes), so that
other share rules can be compared without refitting."""


def _keep_parts(path: Path, held: str, seed: int, parts: dict | None) -> None:
    if not parts:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[f"{held}:{seed}"] = parts
    path.write_text(json.dumps(doc))


def _record(row: dict[str, Any], part: tuple[str, int], out: Path = OUT) -> None:
    """Add a row (replacing one of the same method, family, seed and size) and its kept
    parts, under a lock: several runs may write at once."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(out.read_text()) if out.exists() else {"rows": []}
        key = (row["method"], row["held_out"], row["seed"], row["size"])
        doc["rows"] = [
            x for x in doc["rows"]
            if (x["method"], x["held_out"], x["seed"], x.get("size")) != key
        ] + [row]  # fmt: skip
        doc["summary"] = summarize(doc["rows"])
        out.write_text(json.dumps(doc, indent=1) + "\n")
        if part in PARTS:
            parts_file = out.with_name("predictors_lofo_parts.json")
            kept = json.loads(parts_file.read_text()) if parts_file.exists() else {}
            kept[f"{part[0]}:{part[1]}"] = PARTS[part]
            parts_file.write_text(json.dumps(kept))


if __name__ == "__main__":
    main()
