"""Pictures of attention: graphs (:func:`draw_attention_graph`) and heatmaps
(:func:`attention_heatmap`).

Figures are made without pyplot (:class:`matplotlib.figure.Figure`), so they
need no display and leave nothing open; the functions return ``(Figure, Axes)``
and save to ``path=`` on request.  In Jupyter, showing ``fig`` displays it.
"""
from .draw import LAYOUTS, attention_neighbourhood, draw_attention_graph
from .heatmap import attention_heatmap

__all__ = ["LAYOUTS", "attention_heatmap", "attention_neighbourhood", "draw_attention_graph"]
