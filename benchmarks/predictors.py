"""Predictor benchmark: rank correlation of every predictor on the shared benchmark tables.

Parts (``--part``, default all; each writes its section of the results JSON):

* ``nb201``: NB201 CIFAR-10 with 100 and 1,000 training architectures, tested on the rest.
* ``zeroshot``: trained on NB101 + NB301 only, tested on all of NB201 and all of
  NAS-Bench-Macro; then 50-shot fine-tuning on each target (tested on the rest). GENNAPE's
  source model includes its leave-one-family-out fits (``transfer``), in ``fit_seconds``.
* ``zc``: the JAX zero-cost proxies on a random sample of each target (they build and
  differentiate the full network per architecture, seconds each on this CPU), with params,
  FLOPs and the zero-shot GENNAPE model ranked on the same sample; and NASLib's published
  proxy values for its 491-architecture NB201 sample, for reference.
* ``throughput``: GENNAPE predictions per second over all 15,625 NB201 networks (features
  precomputed).
* ``labels``: for the predictors with a compute prior, the prior alone, the learned part
  alone and the prediction side by side (NB201 with 100 training architectures, zero-shot
  from NB101 + NB301, and ``pretrained:gennape`` as shipped).
* ``heldout``: model selection for zero-shot GENNAPE without target labels: each option set
  of :data:`HELDOUT_CONFIGS` trained on one source family (NB101 or NB301) and tested on the
  other, beside the params and FLOPs proxies, with the network's whole part
  (``transfer="full"``; by default an unseen space gets the prior alone).

Run: ``.venv/bin/python -m benchmarks.predictors [--part P] [--seeds 0,1] [--zc-sample 50]``.
``--plots`` also writes one predicted-versus-true scatter plot per (setting, predictor, seed)
into ``benchmarks/results/plots/``.
The load average is recorded beside every timing: numbers taken on a shared machine are
contended.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results" / "predictors.json"
PLOTS = OUT.parent / "plots"
TRAINED = ("gennape", "onnxnet", "gbm", "mlp")
CHEAP_PROXIES = ("params", "flops")


def _available(name: str) -> bool:
    from nas.predictors.base import get_predictor

    from nas.errors import NasError

    try:
        get_predictor(name)
        return True
    except NasError:
        return False
    except Exception:  # another helper's module may be mid-edit
        return False


def _load() -> dict[str, Any]:
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def _save(section: str, value: Any) -> None:
    """Read-modify-write one section under a lock (parts may run in parallel processes)."""
    import fcntl

    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        doc = _load()
        doc[section] = value
        doc["machine"] = {"cpus": os.cpu_count(), "note": "shared machine; timings contended"}
        OUT.write_text(json.dumps(doc, indent=1))


def _row(result: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "predictor",
        "kendall_tau",
        "spearman",
        "n_train",
        "n_finetune",
        "n_test",
        "predictions_per_second",
        "first_predict_seconds",
        "fit_seconds",
        "ood_fraction",
        "basis",
        "learned_share",
        "prior_only",
        "learned_only",
    )
    out = {k: result[k] for k in keep if k in result}
    out["loadavg"] = round(os.getloadavg()[0], 2)
    return out


def _plot(plots: bool, setting: str, seed: int, name: str, pred: Any, y: Any) -> None:
    """With ``--plots``: the scatter of one evaluation, ``plots/<setting>-<name>-seed<k>.png``."""
    if not plots:
        return
    import re

    from nas.predictors.evaluate import plot_predictions

    slug = re.sub(r"[^A-Za-z0-9_.+-]+", "_", f"{setting}-{name}-seed{seed}")
    plot_predictions(pred, y, PLOTS / f"{slug}.png", name=name, setting=f"{setting}, seed {seed}")


def _kept(section: str, names: list[str]) -> list[dict[str, Any]]:
    """The rows of ``section`` for predictors this run does not re-measure."""
    return [r for r in _load().get(section, []) if r.get("predictor") not in names]


def part_nb201(seeds: list[int], names: list[str], plots: bool = False) -> None:
    from nas.predictors.base import get_predictor
    from nas.predictors.data import load_split
    from nas.predictors.evaluate import run_evaluation

    rows = _kept("nb201_cifar10", names)
    for n in (100, 1000):
        for seed in seeds:
            train, test = load_split([f"nb201:cifar10:{n}"], "nb201:cifar10", seed=seed)
            for name in names:
                t0 = time.time()
                ev = run_evaluation(get_predictor(name, seed=seed), train, test)
                row = {"setting": f"nb201-cifar10-train{n}", "seed": seed, **_row(ev.metrics)}
                _plot(plots, row["setting"], seed, name, ev.mean, ev.y)
                rows.append(row)
                print(json.dumps(row), f"({time.time() - t0:.0f}s)", flush=True)
                _save("nb201_cifar10", rows)


def part_zeroshot(seeds: list[int], names: list[str], plots: bool = False) -> None:
    """One source model per (predictor, seed), saved after fitting and reloaded for each
    target, so that 50-shot fine-tuning on one target never leaks into the other."""
    import tempfile

    from nas.predictors.base import get_predictor, load_predictor
    from nas.predictors.data import LabelledSet, load_spec
    from nas.predictors.evaluate import rank_metrics, run_evaluation

    rows = _kept("zeroshot", names)
    source = LabelledSet.concat([load_spec("nb101"), load_spec("nb301")])
    targets = {t: load_spec(t) for t in ("nb201:cifar10", "nbmacro")}
    for seed in seeds:
        for name in names:
            fitted, fit_s = None, 0.0
            for target, full in targets.items():
                order = np.random.default_rng(seed).permutation(len(full))
                shots, rest = full.subset(order[:50]), full.subset(order[50:])
                p = get_predictor(name, seed=seed)
                if not p.zero_shot:
                    # Encoding baselines cannot score another space: trained on the 50 shots.
                    ev = run_evaluation(p, shots, rest)
                    row = {"setting": f"50shot-{target}", "seed": seed, **_row(ev.metrics)}
                    row["note"] = "own-space encoding: trained on the 50 target archs only"
                    _plot(plots, row["setting"], seed, name, ev.mean, ev.y)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    _save("zeroshot", rows)
                    continue
                if fitted is not None:
                    p = load_predictor(fitted)
                ev = run_evaluation(p, source, full, refit=fitted is None)
                if fitted is None:
                    fit_s = ev.metrics["fit_seconds"]
                    fitted = p.save(Path(tempfile.mkdtemp(prefix="zeroshot-")) / name)
                row = {"setting": f"zeroshot-{target}", "seed": seed, **_row(ev.metrics)}
                _plot(plots, row["setting"], seed, name, ev.mean, ev.y)
                row["fit_seconds"] = fit_s  # the one source model's training time
                rows.append(row)
                print(json.dumps(row), flush=True)
                if name in CHEAP_PROXIES:
                    m = rank_metrics(p.predict(rest.graphs)[0], rest.y)
                    extra = {"n_test": len(rest), "note": "training-free; same test set"}
                    rows.append({"setting": f"50shot-{target}", "seed": seed, "predictor": name})
                    rows[-1].update({**m, **extra})
                else:  # 50-shot fine-tuning of the source model, tested on the other archs.
                    t0 = time.perf_counter()
                    p.fine_tune(shots.graphs, shots.y, shots.groups)
                    ft_s = time.perf_counter() - t0
                    pred = p.predict(rest.graphs)[0]
                    m = rank_metrics(pred, rest.y)
                    _plot(plots, f"50shot-{target}", seed, name, pred, rest.y)
                    row = {
                        "setting": f"50shot-{target}",
                        "seed": seed,
                        "predictor": name,
                        **m,
                        "n_train": len(source),
                        "n_finetune": 50,
                        "n_test": len(rest),
                        "fit_seconds": ft_s,
                        "loadavg": round(os.getloadavg()[0], 2),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                _save("zeroshot", rows)


HELDOUT_CONFIGS: dict[str, dict[str, Any]] = {
    "v1": {"scale_free": False, "cost": "none", "transfer": "full"},
    "scale_free": {"scale_free": True, "cost": "none", "transfer": "full"},
    "scale_free+flops": {"scale_free": True, "cost": "flops", "transfer": "full"},
    "scale_free+params": {"scale_free": True, "cost": "params", "transfer": "full"},
    "scale_free+both": {"scale_free": True, "cost": "both", "transfer": "full"},
    "scale_free+flops/short": {
        "scale_free": True,
        "cost": "flops",
        "transfer": "full",
        "pretrain_steps": 100,
        "steps": 200,
    },
    "scale_free+prior": {"scale_free": True, "cost": "none", "transfer": "full", "prior": "flops"},
    "scale_free+effective_prior": {
        "scale_free": True,
        "cost": "none",
        "transfer": "full",
        "prior": "effective_flops",
    },
    "v1+prior": {"scale_free": False, "cost": "none", "transfer": "full", "prior": "flops"},
    "scale_free+depth_prior": {
        "scale_free": True,
        "cost": "none",
        "transfer": "full",
        "prior": "flops_depth",
    },
    "scale_free+flops/strong-aug": {
        "scale_free": True,
        "cost": "flops",
        "transfer": "full",
        "aug_drop": 0.2,
        "aug_noise": 0.1,
    },
}


def part_heldout(seeds: list[int], configs: list[str], plots: bool = False) -> None:
    from nas.predictors.base import get_predictor
    from nas.predictors.data import load_spec
    from nas.predictors.evaluate import run_evaluation

    rows = _load().get("heldout", [])
    fams = {"nb101": load_spec("nb101"), "nb301": load_spec("nb301")}
    for src, dst in (("nb101", "nb301"), ("nb301", "nb101")):
        for seed in seeds:
            runs = [(c, "gennape", HELDOUT_CONFIGS[c]) for c in configs]
            runs += [(n, n, {}) for n in CHEAP_PROXIES]
            for label, name, options in runs:
                ev = run_evaluation(get_predictor(name, seed=seed, **options), fams[src], fams[dst])
                r = ev.metrics
                _plot(plots, f"heldout-{src}-{dst}", seed, label, ev.mean, ev.y)
                row = {
                    "setting": f"{src}->{dst}",
                    "config": label,
                    "options": options,
                    "seed": seed,
                }
                row.update(_row(r))
                rows = [
                    x
                    for x in rows
                    if (x["setting"], x["config"], x["seed"]) != (row["setting"], label, seed)
                ]
                rows.append(row)
                print(json.dumps(row), flush=True)
                _save("heldout", rows)


def part_zc(sample: int, seed: int, plots: bool = False) -> None:
    from nas.predictors.base import get_predictor
    from nas.predictors.baselines import ZERO_COST
    from nas.predictors.data import LabelledSet, load_spec
    from nas.predictors.evaluate import rank_metrics

    rows = []
    source = LabelledSet.concat([load_spec("nb101"), load_spec("nb301")])
    gen = get_predictor("gennape", seed=seed).fit(source.graphs, source.y, source.groups)
    for target in ("nb201:cifar10", "nbmacro"):
        data = load_spec(f"{target}:{sample}", seed=seed + 7)
        for name in (*CHEAP_PROXIES, *ZERO_COST):
            p = get_predictor(name, seed=seed).fit(data.graphs[:5])
            t0 = time.perf_counter()
            s = p.predict(data.graphs)[0]
            dt = time.perf_counter() - t0
            _plot(plots, f"zc-sample-{target}", seed, name, s, data.y)
            row = {
                "setting": f"zc-sample-{target}",
                "predictor": name,
                **rank_metrics(s, data.y),
                "n_test": len(data),
                "seconds_per_arch": dt / len(data),
                "loadavg": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            _save("zero_cost_sample", rows)
        m = rank_metrics(gen.predict(data.graphs)[0], data.y)
        rows.append(
            {
                "setting": f"zc-sample-{target}",
                "predictor": "gennape-zeroshot",
                **m,
                "n_test": len(data),
            }
        )
        _save("zero_cost_sample", rows)
    rows.extend(_naslib_reference())
    _save("zero_cost_sample", rows)


def _naslib_reference() -> list[dict[str, Any]]:
    """Tau of NASLib's own proxy values (PyTorch, CIFAR-10 data) on its NB201 sample."""
    from nas.predictors.evaluate import rank_metrics

    from nas.paths import shared_data_dir

    path = shared_data_dir() / "nasbench" / "naslib_zc_nasbench201.json"
    if not path.exists():
        return []
    recs = json.loads(path.read_text())["nasbench201"]["cifar10"]
    ys = np.array([r["val_accuracy"] for r in recs.values()])
    out = []
    for proxy in ("synflow", "jacov", "snip", "grad_norm", "params", "flops"):
        vals = np.array([r[proxy] for r in recs.values()], float)
        out.append(
            {
                "setting": "naslib-reference-nb201-cifar10",
                "predictor": proxy,
                **rank_metrics(np.nan_to_num(vals, nan=-1e9), ys),
                "n_test": len(ys),
                "note": "NASLib's published values (validation accuracy), not computed here",
            }
        )
    return out


LABEL_SETTINGS = {
    # setting -> (train SPECs, test SPEC); "pretrained" trains nothing
    "nb201-100": (["nb201:cifar10:100"], "nb201:cifar10:1000"),
    "nb101+nb301->nb201": (["nb101", "nb301"], "nb201:cifar10:1000"),
    "nb101+nb301->nbmacro": (["nb101", "nb301"], "nbmacro:1000"),
    "pretrained->nb201": ([], "nb201:cifar10:1000"),
    "pretrained->nbmacro": ([], "nbmacro:1000"),
}


def part_labels(seeds: list[int], names: list[str]) -> None:
    """The prior alone, the learned part alone and the prediction, side by side, for the
    predictors with a compute prior (``pretrained`` settings: ``pretrained:gennape``)."""
    from nas.predictors.evaluate import specs_evaluation

    rows = []
    for setting, (train, test) in LABEL_SETTINGS.items():
        pretrained = setting.startswith("pretrained")
        for name in ["pretrained:gennape"] if pretrained else names:
            for seed in seeds:
                ev = specs_evaluation(name, train, test, seed=seed)
                m = ev.metrics
                row = {"setting": setting, "predictor": name, "seed": seed, **_row(m)}
                if "prior_only" in m:
                    row["prior_only_tau"] = m["prior_only"]["kendall_tau"]
                    row["learned_only_tau"] = m["learned_only"]["kendall_tau"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                _save("labels", rows)


def part_throughput(seed: int) -> None:
    from nas.predictors.base import get_predictor
    from nas.predictors.data import load_spec
    from nas.predictors.features import features

    train = load_spec("nb201:cifar10:100", seed=seed)
    full = load_spec("nb201:cifar10")
    t0 = time.perf_counter()
    features(full.graphs)  # the on-disk feature cache read into memory, once per process
    cache_s = time.perf_counter() - t0
    p = get_predictor("gennape", seed=seed).fit(train.graphs, train.y)
    t0 = time.perf_counter()
    p.predict(full.graphs)
    first_s = time.perf_counter() - t0
    rows = []
    for _ in range(3):
        t0 = time.perf_counter()
        p.predict(full.graphs)  # the whole predict call: cached features in, scores out
        dt = time.perf_counter() - t0
        rows.append(
            {
                "predictor": "gennape",
                "archs": len(full),
                "seconds": dt,
                "predictions_per_second": len(full) / dt,
                "includes": "predict(ArchRefs): in-memory feature lookup, batching, model",
                "first_predict_seconds": first_s,
                "feature_cache_read_seconds": cache_s,
                "loadavg": round(os.getloadavg()[0], 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    _save("throughput", rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--part",
        default="all",
        help="all or a comma list of nb201,zeroshot,zc,throughput,heldout,labels",
    )
    ap.add_argument("--configs", help="heldout: comma list of HELDOUT_CONFIGS names (default all)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--zc-sample", type=int, default=50)
    ap.add_argument("--predictors", help="comma-separated subset")
    ap.add_argument(
        "--plots", action="store_true", help="also write scatter plots to results/plots/"
    )
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    # onnxnet has its own benchmark (benchmarks/onnxnet.py, text encoding is slow on CPU);
    # include it here with --predictors.
    default = [n for n in (*TRAINED, *CHEAP_PROXIES) if n != "onnxnet"]
    wanted = args.predictors.split(",") if args.predictors else default
    names = [n for n in wanted if _available(n)]
    parts = (
        {"nb201", "zeroshot", "zc", "throughput"}
        if args.part == "all"
        else set(args.part.split(","))
    )
    if "throughput" in parts:
        part_throughput(seeds[0])
    if "nb201" in parts:
        part_nb201(seeds, names, args.plots)
    if "zeroshot" in parts:
        part_zeroshot(seeds, names, args.plots)
    if "zc" in parts:
        part_zc(args.zc_sample, seeds[0], args.plots)
    if "heldout" in parts:
        configs = args.configs.split(",") if args.configs else list(HELDOUT_CONFIGS)
        part_heldout(seeds, configs, args.plots)
    if "labels" in parts:
        part_labels(
            seeds, [n for n in ("gennape", "onnxnet") if n in wanted or args.predictors is None]
        )


if __name__ == "__main__":
    main()
