"""Headless figures: created without pyplot, saved on request."""
from __future__ import annotations

from pathlib import Path
from typing import cast

from matplotlib.axes import Axes
from matplotlib.figure import Figure

PathLike = str | Path


def figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """``ax``'s figure, or a new :class:`~matplotlib.figure.Figure` not managed by pyplot
    (no display needed, nothing left open)."""
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}")
        return cast(Figure, ax.figure), ax  # a SubFigure's Axes: drawn on all the same
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: PathLike | None, dpi: int = 150) -> None:
    """Writes ``fig`` to ``path`` (format from the suffix: .png, .svg, .pdf) if given."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
