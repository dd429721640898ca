"""Sphinx configuration of the pyg_attn documentation (builds offline)."""
from __future__ import annotations

import os
import subprocess
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
exclude_patterns = ["_build", "_generated"]

# No network at build time: no intersphinx; cross-references to torch/PyG stay plain text.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = True
nitpicky = False
# numpydoc parameter types such as "(edge_index, alpha)" name several attributes of
# that name (AttentionRecord.alpha, SparseAttention.alpha, ...): not worth a warning.
suppress_warnings = ["ref.python"]

html_theme = "alabaster"
html_title = f"pyg_attn {release}"
html_static_path: list[str] = []


# ---------------------------------------------------------------------------- figures
# The user guide shows the pictures the examples draw.  They are drawn at build
# time (into docs/_generated/, not versioned) by running the examples, so they
# never go stale; a picture newer than its script is reused.
GENERATED = Path(__file__).resolve().parent / "_generated"
FIGURES = {  # example script: picture it writes to --out
    "02_dense_to_digraph.py": "dense_to_digraph.png",
    "05_attention_centrality.py": "attention_centrality.png",
    "10_attention_flow.py": "attention_flow.png",
    "11_attention_rollout.py": "attention_rollout.png",
    "12_sparsify_attention.py": "sparsify_attention.png",
    "07_sequence_self_attention.py": "sequence_self_attention.png",
}


def draw_example_figures(app) -> None:
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for script, picture in FIGURES.items():
        source = ROOT / "examples" / script
        out = GENERATED / source.stem
        target = out / picture
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            continue
        result = subprocess.run([sys.executable, str(source), "--out", str(out)], env=env,
                                cwd=ROOT, capture_output=True, text=True, timeout=600)
        if result.returncode != 0 or not target.is_file():
            raise RuntimeError(f"{script} did not draw {picture}:\n{result.stderr[-3000:]}")


def setup(app) -> None:
    app.connect("builder-inited", draw_example_figures)
