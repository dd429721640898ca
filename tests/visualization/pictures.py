"""Checks that a saved picture exists and is not blank."""
from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np


def assert_png_not_blank(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 0
    image = matplotlib.image.imread(path)
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 2, "blank picture"
