"""Figures without pyplot: the library draws on its own Agg canvases.

Calling ``matplotlib.use(...)`` or drawing through ``pyplot`` from a library changes the
caller's backend and figure list (a notebook's inline plots). Every figure the platform
makes comes from :func:`new_figure` instead: an off-screen Figure with its own canvas, which
``savefig`` writes and the garbage collector frees.
"""

from __future__ import annotations

from typing import Any


def new_figure(figsize: tuple[float, float], **kwargs: Any) -> Any:
    """A ``matplotlib.figure.Figure`` on its own Agg canvas (nothing global is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, **kwargs)
    FigureCanvasAgg(fig)
    return fig
