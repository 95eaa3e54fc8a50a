"""How much could any share rule get out of the leave-one-family-out learned parts?

Reads the parts :mod:`benchmarks.predictors_lofo` keeps (``runs/lofo_parts/METHOD.json``:
per held-out family and seed, the z-scored prior and learned part on the held-out family
and on each inner held-out family) and scores ``prior + r * learned`` on the held-out
family for the share ``r`` (steps of 0.1) that three rules choose:

* ``worst``: the share with the best *worst* inner-family gain (point estimate; the
  benchmark's rule, :func:`nas.predictors.transfer.unseen_share`, takes the 10% bootstrap
  quantile of it and is more cautious still);
* ``mean``: the best mean inner-family gain;
* ``oracle``: the best gain on the held-out family itself, using its labels. Not a rule a
  predictor may use: an upper bound on what mixing this learned part can give.

If even ``oracle`` gains less than +0.03 on most families, no share rule can meet the goal
with that learned part. Run: ``.venv/bin/python -m benchmarks.predictors_lofo_rules``;
results in ``benchmarks/results/predictors_lofo_rules.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.predictors_lofo import FAMILIES, PARTS_DIR

OUT = Path(__file__).parent / "results" / "predictors_lofo_rules.json"
GRID = np.linspace(0.0, 1.0, 11)


def gains(part: dict[str, list]) -> np.ndarray:
    """Kendall tau of ``prior + r * learned`` minus the prior's, for every ``r`` of GRID."""
    from scipy.stats import kendalltau

    prior, learned, y = (np.asarray(part[k]) for k in ("prior", "learned", "y"))
    t = np.array([kendalltau(prior + r * learned, y)[0] for r in GRID])
    return np.nan_to_num(t - t[0])


def score(parts: dict[str, dict], held: str) -> dict[str, float]:
    """The held-out gain of each rule's share for one held-out family and seed."""
    inner = np.array([gains(p) for fam, p in parts.items() if fam != held])
    outer = gains(parts[held])
    pick = {
        "worst": inner.min(0),
        "mean": inner.mean(0),
        "oracle": outer,
    }
    out = {}
    for rule, g in pick.items():
        i = int(np.argmax(g)) if g.max() > 0 else 0
        out[f"{rule}_share"], out[f"{rule}_gain"] = float(GRID[i]), float(outer[i])
    return out


def main() -> None:
    result: dict[str, dict] = {}
    for path in sorted(PARTS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        per: dict[str, dict] = {}
        for fam in FAMILIES:
            rows = [score(p, fam) for k, p in doc.items() if k.split(":")[0] == fam]
            if rows:
                per[fam] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                per[fam]["seeds"] = sorted(
                    int(k.split(":")[1]) for k in doc if k.startswith(fam + ":")
                )
        result[path.stem] = per
        line = "  ".join(
            f"{f} worst {v['worst_gain']:+.3f} mean {v['mean_gain']:+.3f} oracle {v['oracle_gain']:+.3f}"
            for f, v in per.items()
        )
        print(f"{path.stem}: {line}")
    OUT.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
