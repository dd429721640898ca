"""Screenshot of the attention explorer's default view for the docs (docs/_static/explorer.png).

Trains a short GAT on the shipped Cora (or uses ``--checkpoint``), writes the
explorer page of one node's 2-hop neighbourhood with ``pyg-attn explain --html``
and photographs it in headless Chromium::

    .venv/bin/python docs/make_screenshots.py
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from pyg_attn.training.explain import explain  # noqa: E402
from pyg_attn.training.node_classification import (TrainConfig,  # noqa: E402
                                                   train_node_classification)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def screenshot(page: Path, picture: Path, size: str = "1300,830") -> None:
    """Photographs ``page`` (a local HTML file) into ``picture`` with headless Chromium."""
    browser = next(filter(None, map(shutil.which, BROWSERS)), None)
    if browser is None:
        raise SystemExit("no Chromium found: install chromium (Debian: apt-get install chromium)")
    picture.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                        f"--screenshot={picture.resolve()}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="output of 'pyg-attn train' (default: train 60 epochs now)")
    parser.add_argument("--node", type=int, default=22, help="centre node (default 22)")
    parser.add_argument("--out", type=Path, default=DOCS / "_static")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = Path(work) / "cora-gat"
            train_node_classification(TrainConfig(dataset="Cora", model="gat", epochs=60,
                                                  out=str(checkpoint)), progress=False)
        written = explain(checkpoint, node=args.node, out=Path(work) / "explain", html=True)
        screenshot(written["html"], args.out / "explorer.png")
    print(f"wrote {args.out / 'explorer.png'}")


if __name__ == "__main__":
    main()
