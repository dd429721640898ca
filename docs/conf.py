"""Sphinx configuration of the pyg_attn documentation (builds offline)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import pyg_attn  # noqa: E402

project = "pyg_attn"
author = "pyg_attn developers"
copyright = "2026, pyg_attn developers"
release = version = pyg_attn.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]

# No network at build time: no intersphinx; cross-references to torch/PyG stay plain text.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = True
nitpicky = False

html_theme = "alabaster"
html_title = f"pyg_attn {release}"
html_static_path: list[str] = []
