"""Write the README's predictor tables from the benchmark results files.

Two tables sit in README.md between HTML comment markers, so a rerun of the benchmarks is
followed by one command, not by hand edits:

- ``predictor-table``: GENNAPE with 100 NB201 training architectures and on unseen
  families (``benchmarks/results/predictors.json``, part ``labels``): the combined score,
  the prior alone and the learned part alone, Kendall tau, mean over seeds;
- ``lofo-table``: leave one family out (``benchmarks/results/predictors_lofo.json``,
  ``summary``): per held-out family, the prior alone, the learned part alone, the
  combination with the share chosen without the held-out labels, and with the whole
  learned part.

    python -m benchmarks.readme_tables
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def _mean(rows: list[dict], key: str) -> str:
    return f"{statistics.mean(r[key] for r in rows):.3f}"


def predictor_table() -> str:
    rows = json.loads((RESULTS / "predictors.json").read_text())["labels"]
    settings = sorted({(r["setting"], r["predictor"]) for r in rows}, key=lambda s: s[0])
    out = [
        "| setting | predictor | seeds | combined | prior only | learned only | learned_share |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, name in settings:
        group = [r for r in rows if (r["setting"], r["predictor"]) == (setting, name)]
        share = statistics.mean(r["learned_share"] for r in group)
        out.append(
            f"| {setting} | {name} | {len(group)} | {_mean(group, 'kendall_tau')} | "
            f"{_mean(group, 'prior_only_tau')} | {_mean(group, 'learned_only_tau')} | "
            f"{share:g} |"
        )
    return "\n".join(out)


def lofo_table() -> str:
    summary = json.loads((RESULTS / "predictors_lofo.json").read_text())["summary"]
    out = [
        "| method | held out | seeds | prior only | learned only | combined (share chosen) "
        "| share | whole learned part |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method, doc in summary.items():
        for family, f in doc["families"].items():
            out.append(
                f"| {method} | {family} | {len(f['seeds'])} | {f['prior']:.3f} | "
                f"{f['learned']:.3f} | {f['combined']:.3f} | {f['share']:g} | "
                f"{f['combined_full']:.3f} |"
            )
    return "\n".join(out)


def replace(text: str, name: str, table: str) -> str:
    pattern = re.compile(rf"(<!-- {name} -->\n)(?:.*?\n)?(<!-- /{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no <!-- {name} --> ... <!-- /{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)


def main() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    text = replace(text, "predictor-table", predictor_table())
    text = replace(text, "lofo-table", lofo_table())
    readme.write_text(text)
    print("README.md tables written")


if __name__ == "__main__":
    main()
