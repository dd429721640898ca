"""Pictures of attention: graphs (:func:`draw_attention_graph`), heatmaps
(:func:`attention_heatmap`) and an interactive HTML explorer (:func:`explorer`).

Figures are made without pyplot (:class:`matplotlib.figure.Figure`), so they
need no display and leave nothing open; the functions return ``(Figure, Axes)``
and save to ``path=`` on request.  In Jupyter, showing ``fig`` displays it.
"""
from .draw import LAYOUTS, attention_neighbourhood, draw_attention_graph
from .explorer import AttentionExplorer, explorer
from .heatmap import attention_heatmap

__all__ = ["LAYOUTS", "AttentionExplorer", "attention_heatmap", "attention_neighbourhood",
           "draw_attention_graph", "explorer"]
