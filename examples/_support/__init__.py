"""What the example scripts share: the output folder and saving a figure.

Not an example itself (``tests/test_examples.py`` runs only ``examples/*.py``);
the scripts import it from their own folder, which Python puts first on the path.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import matplotlib.pyplot as plt


def output_dir(out: Optional[Path], prefix: str) -> Path:
    """``out`` (created if needed), or a new temporary folder named ``prefix...``."""
    folder = out if out is not None else Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_figure(fig: plt.Figure, path: Path) -> None:
    """Lays out, saves (100 dpi), closes the figure and says where it went."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")
