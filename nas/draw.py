"""Diagrams of architecture graphs (PNG or SVG) drawn with matplotlib from the IR.

Three views: ``ops`` draws every atomic op; ``network`` collapses nodes into their blocks
(the first ``depth`` levels of each node's ``scope``); ``cell`` draws one repeated block (the
first scope containing ``cell``, or a ``scope`` prefix you name) op by op, with the block's
inputs as grey boxes. Labels and colours are the ops' own (:mod:`nas.ops`).
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from nas.errors import ConfigError
from nas.graph import ArchGraph
from nas.ops import OPS

_BLOCK_COLOUR = "#a8dadc"


def _label(graph: ArchGraph, n: int) -> str:
    return OPS[graph.op(n)].describe(graph.node(n))


def _colour(kind: str) -> str:
    return _BLOCK_COLOUR if kind == "block" else OPS[kind].colour


def _view_graph(graph: ArchGraph, view: str, scope: str | None, depth: int) -> nx.DiGraph:
    g = graph.g
    out = nx.DiGraph()
    if view == "ops":
        for n in g:
            out.add_node(n, label=_label(graph, n), kind=graph.op(n))
        out.add_edges_from(g.edges())
        return out
    if view == "network":

        def block(n):
            s = g.nodes[n].get("scope") or graph.op(n)
            return "/".join(s.split("/")[:depth])

        for n in g:
            b = block(n)
            if b not in out:
                out.add_node(b, label=b.replace("/", "\n"), kind="block")
        for u, v in g.edges():
            if block(u) != block(v):
                out.add_edge(block(u), block(v))
        return out
    # cell view
    if scope is None:
        scopes = [g.nodes[n].get("scope", "") for n in graph.topological()]
        cells = [s for s in scopes if "cell" in s.lower()]
        if not cells:
            raise ConfigError(
                "this graph has no block named like a cell; use --view network or ops"
            )
        first = cells[0].split("/")
        idx = max(i for i, p in enumerate(first) if "cell" in p.lower())
        scope = "/".join(first[: idx + 1])
    members = {n for n in g if (g.nodes[n].get("scope") or "").startswith(scope)}
    if not members:
        raise ConfigError(f"no node has a scope starting with {scope!r}")
    for n in members:
        out.add_node(n, label=_label(graph, n), kind=graph.op(n))
    for u, v in g.edges():
        if v in members:
            if u not in members:
                out.add_node(u, label="input\n" + ",".join(map(str, graph.shape(u))), kind="input")
            out.add_edge(u, v)
    return out


def draw(
    graph: ArchGraph,
    out: str | Path,
    view: str = "auto",
    scope: str | None = None,
    depth: int = 2,
    title: str | None = None,
) -> Path:
    """Draw ``graph`` to ``out`` (``.png`` or ``.svg``); returns the path."""
    from nas.figures import new_figure

    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ConfigError(f"diagram file must end in .png or .svg, got {out.name!r}")
    if view == "auto":
        has_cell = any("cell" in (graph.g.nodes[n].get("scope") or "").lower() for n in graph.g)
        view = "cell" if has_cell or scope else ("ops" if len(graph) <= 60 else "network")
    if view not in ("cell", "network", "ops"):
        raise ConfigError(f"unknown view {view!r}; choose cell, network or ops")
    vg = _view_graph(graph, view, scope, depth)
    layers = [sorted(nodes, key=str) for nodes in nx.topological_generations(vg)]
    pos = {}
    for depth_i, nodes in enumerate(layers):
        for j, n in enumerate(nodes):
            pos[n] = (j - (len(nodes) - 1) / 2.0, -float(depth_i))
    n_layers = len(layers)
    width = max((len(nodes) for nodes in layers), default=1)
    fig = new_figure((max(4.0, 1.5 * width), max(3.0, 0.7 * n_layers)))
    ax = fig.add_subplot()
    nx.draw_networkx_edges(
        vg,
        pos,
        ax=ax,
        arrows=True,
        arrowsize=10,
        edge_color="#555555",
        node_size=900,
        connectionstyle="arc3,rad=0.08",
    )
    for n, (x, y) in pos.items():
        d = vg.nodes[n]
        ax.text(
            x,
            y,
            d["label"],
            ha="center",
            va="center",
            fontsize=7,
            bbox={
                "boxstyle": "round,pad=0.3",
                "fc": _colour(d["kind"]),
                "ec": "#333333",
            },
        )
    ax.set_title(title or f"{graph.meta.get('space', '')} {view}".strip(), fontsize=9)
    ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight", dpi=110)
    return out
