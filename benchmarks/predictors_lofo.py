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
choice) and ``graf`` (GRAF-style graph statistics, :mod:`nas.predictors.graf`, standardised
within each family on that family's architectures without labels, and optionally log
synflow beside them, into gradient-boosted trees on per-family standardised accuracy).

Goal: ``combined`` beats ``prior`` by at least +0.03 mean Kendall tau on at least 3 of the 4
held-out families. Run: ``.venv/bin/python -m benchmarks.predictors_lofo [--seeds 0,1,2]
[--methods gennape graf] [--size 1000] [--synflow]``; results in
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
    from nas.predictors.graf import graf_features, standardise_by_family

    x = graf_features(features(data.graphs))
    if synflow:
        x = np.hstack([x, _synflow(data)[:, None]])
    return standardise_by_family(x, data.groups)


def _synflow(data) -> np.ndarray:
    """Log synflow of every architecture, cached in ``$NAS_CACHE_DIR``."""
    from nas.predictors.features import as_graph, cache_dir
    from nas.predictors.zerocost.proxies import synflow

    path = cache_dir() / "synflow-v1.json"
    cache = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for g in data.graphs:
        key = f"{g.space}|{g.dataset}|{g.arch}"
        if key not in cache:
            cache[key] = synflow(as_graph(g))
        out.append(cache[key])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cache))
    return np.asarray(out, np.float64)


def run_graf(data, held: str, seed: int, synflow: bool) -> dict[str, Any]:
    from nas.predictors.features import features
    from nas.predictors.transfer import fit_prior, standardise, unseen_share
    from sklearn.ensemble import GradientBoostingRegressor

    fam = np.array(data.groups)
    x = _graf_matrix(data, synflow)
    feats = features(data.graphs)
    ys, _ = standardise(data.y, list(fam))

    def model(idx):
        gbm = GradientBoostingRegressor(
            n_estimators=200, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=seed
        )
        return gbm.fit(x[idx], ys[idx])

    def prior_on(idx):
        return fit_prior("flops_depth", [feats[i] for i in idx], data.y[idx], list(fam[idx]), seed)

    tr, te = np.flatnonzero(fam != held), np.flatnonzero(fam == held)

    def parts(train, out):
        train, out = tr[train], tr[out]
        return prior_on(train)([feats[i] for i in out]), model(train).predict(x[out])

    share = unseen_share(list(fam[tr]), data.y[tr], parts, seed)
    prior = prior_on(tr)([feats[i] for i in te])
    learned = model(tr).predict(x[te])
    y = data.y[te]
    return {
        "prior": _tau(prior, y),
        "learned": _tau(learned, y),
        "share": share,
        "combined": _tau(prior + share * learned, y),
        "combined_full": _tau(prior + learned, y),
    }


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--methods", nargs="+", default=["graf", "gennape"], choices=("graf", "gennape")
    )
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--size", type=int, default=1000, help="NB201 and NAS-Bench-Macro cells")
    ap.add_argument("--synflow", action="store_true", help="log synflow beside GRAF")
    args = ap.parse_args(argv)
    for seed in (int(s) for s in args.seeds.split(",")):
        data = load(args.size, seed)
        for method in args.methods:
            for held in args.families:
                t0 = time.time()
                if method == "gennape":
                    r = run_gennape(data, held, seed)
                else:
                    r = run_graf(data, held, seed, args.synflow)
                label = method + ("+synflow" if method == "graf" and args.synflow else "")
                row = {"method": label, "held_out": held, "seed": seed, "size": args.size, **r}
                row["seconds"] = time.time() - t0
                row["loadavg"] = os.getloadavg()[0]
                print(json.dumps(row), flush=True)
                _record(row, (held, seed))
    print(json.dumps(summarize(json.loads(OUT.read_text())["rows"]), indent=1))


def _record(row: dict[str, Any], part: tuple[str, int]) -> None:
    """Add a row (replacing one of the same method, family, seed and size) and its kept
    parts, under a lock: several runs may write at once."""
    import fcntl

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = json.loads(OUT.read_text()) if OUT.exists() else {"rows": []}
        key = (row["method"], row["held_out"], row["seed"], row["size"])
        doc["rows"] = [
            x for x in doc["rows"]
            if (x["method"], x["held_out"], x["seed"], x.get("size")) != key
        ] + [row]  # fmt: skip
        doc["summary"] = summarize(doc["rows"])
        OUT.write_text(json.dumps(doc, indent=1) + "\n")
        if part in PARTS:
            parts_file = OUT.with_name("predictors_lofo_parts.json")
            kept = json.loads(parts_file.read_text()) if parts_file.exists() else {}
            kept[f"{part[0]}:{part[1]}"] = PARTS[part]
            parts_file.write_text(json.dumps(kept))


if __name__ == "__main__":
    main()
