"""A self-contained HTML report of a search (images inlined as data URIs)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from nas.objectives import best_records, objectives_of
from nas.storage import TrialStore, mask_url


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def trajectory_figure(store: TrialStore):
    """The first objective's best-so-far value against trials and against time.

    Drawn on its own figure (never through pyplot), so a caller's matplotlib backend and
    open figures are left alone.
    """
    from nas.figures import new_figure

    first = objectives_of(store)[0]
    trials = [r for r in store.records() if r.completed is not None]
    trials.sort(key=lambda r: r.completed)
    t0 = min((r.started for r in trials if r.started), default=None)
    xs, ts, best, cur = [], [], [], -math.inf
    for i, r in enumerate(trials, 1):
        v = first.value(r) if r.state == "COMPLETE" else None
        if v is not None:
            cur = max(cur, first.sign * v)
        xs.append(i)
        ts.append((r.completed - t0).total_seconds() if t0 else 0.0)
        best.append(first.sign * cur if math.isfinite(cur) else float("nan"))
    fig = new_figure((9, 3.2))
    axes = fig.subplots(1, 2)
    axes[0].step(xs, best, where="post")
    axes[0].set_xlabel("trials finished")
    axes[1].step(ts, best, where="post", color="tab:orange")
    axes[1].set_xlabel("seconds since start")
    for ax in axes:
        ax.set_ylabel(f"best {first.name} so far")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(study: TrialStore, out_dir: str | Path, top: int = 3) -> Path:
    """Write ``report.html`` into ``out_dir`` and return its path.

    "Best" is :func:`nas.objectives.best_records` (the first objective; the Pareto set for
    several), the same definition the summary and ``nas export --trial best`` use.
    """
    out = Path(out_dir)
    recs = study.records()
    settings = study.settings()
    objectives = objectives_of(study)
    best = best_records(recs, objectives)
    ranked = best_records(recs, objectives[:1])
    done = [*best[:1], *(r for r in ranked if not best or r.number != best[0].number)]
    failed = [r for r in recs if r.state == "FAIL" and not r.interrupted]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>nas report: {html.escape(study.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "font-size:13px;text-align:left}code{font-size:12px}img{max-width:100%}</style></head><body>",
        f"<h1>Search report: {html.escape(study.name)}</h1>",
        *_summary(study, settings, objectives, done, failed, recs),
        "<h2 id='trajectory'>Trajectory</h2>",
    ]
    if recs:
        parts.append(f"<img alt='trajectory' src='{_png(trajectory_figure(study))}'>")
    parts += _best(done[:top], settings, objectives, out)
    pareto_png = out / "pareto.png"
    if pareto_png.exists():
        parts.append("<h2 id='pareto'>Pareto front</h2>")
        parts.append(f"<img alt='Pareto front' src='{_file_uri(pareto_png)}'>")
        pareto_json = out / "pareto.json"
        if pareto_json.exists():
            parts.append(f"<pre>{html.escape(pareto_json.read_text()[:5000])}</pre>")
    parts += _failures(failed)
    parts.append(
        "<h2>Settings</h2><pre>"
        + html.escape(mask_url(json.dumps(settings, indent=1, default=str)) or "")
        + "</pre>"
    )
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path


def _summary(study, settings, objectives, done, failed, recs) -> list[str]:
    """The summary table: what ran, how many trials, the best value."""
    first = objectives[0]
    summary = {
        "space": settings.get("space"),
        "strategy": settings.get("strategy"),
        "evaluator": settings.get("evaluator"),
        "dataset": settings.get("dataset"),
        "seed": settings.get("seed"),
        "budget": settings.get("budget"),
        "completed trials": len(done),
        "failed trials": len(failed),
        "interrupted (re-run) trials": sum(1 for r in recs if r.interrupted),
        "objectives": ", ".join(f"{o.name} ({o.direction})" for o in objectives),
        f"best {first.name}": f"{first.value(done[0]):.6g}" if done else "-",
        "storage": study.display_url,
    }
    rows = [
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    ]
    return ["<h2 id='summary'>Summary</h2><table>", *rows, "</table>"]


def _best(records, settings, objectives, out: Path) -> list[str]:
    """The best architectures, each with its values, costs and diagram."""
    from nas.draw import draw
    from nas.search_spaces import get_space

    parts = ["<h2 id='best'>Best architectures</h2>"]
    space = get_space(settings["space"]) if settings.get("space") else None
    for rank, r in enumerate(records, 1):
        parts.append(
            f"<h3>#{rank}: trial {r.number}, "
            + ", ".join(f"{o.name} {o.value(r):.6g}" for o in objectives if o.value(r) is not None)
            + "</h3>"
            f"<p><code>{html.escape(r.arch)}</code><br>params {int(r.cost.get('params', 0)):,},"
            f" FLOPs {int(r.cost.get('flops', 0)):,}</p>"
        )
        if space is not None:
            try:
                graph = space.to_graph(space.parse(r.arch), settings.get("dataset"))
                path = out / "diagrams" / f"trial{r.number}.png"
                draw(graph, path, title=f"trial {r.number}")
                parts.append(f"<img alt='diagram of trial {r.number}' src='{_file_uri(path)}'>")
            except Exception as e:  # noqa: BLE001 - a missing diagram must not lose the report
                parts.append(f"<p>(no diagram: {html.escape(str(e))})</p>")
    return parts


def _failures(failed) -> list[str]:
    """The failed trials and why."""
    parts = ["<h2 id='failures'>Failures</h2>"]
    if not failed:
        return [*parts, "<p>No trial failed.</p>"]
    parts.append("<table><tr><th>trial</th><th>architecture</th><th>error</th></tr>")
    for r in failed:
        parts.append(
            f"<tr><td>{r.number}</td><td><code>{html.escape(r.arch)}</code></td>"
            f"<td>{html.escape(r.error)}</td></tr>"
        )
    return [*parts, "</table>"]
