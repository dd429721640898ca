"""Screenshots of the attention explorer for the docs (docs/_static/explorer*.png).

``graph``: trains a short GAT on the shipped Cora (or uses ``--checkpoint``), writes the
explorer page of one node's 2-hop neighbourhood with ``pyg-attn explain --html``.
``hetero`` and ``transformer``: run ``examples/hetero_explorer.py`` and
``examples/transformer_explorer.py``.  Each page is photographed in headless Chromium::

    .venv/bin/python docs/make_screenshots.py               # all three
    .venv/bin/python docs/make_screenshots.py --pages hetero transformer
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
         "--hide-scrollbars", "--virtual-time-budget=5000"]


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


#: ``{page: (example script, page it writes, screenshot)}`` of the example pages.
EXAMPLE_PAGES = {
    "hetero": ("hetero_explorer.py", "hetero_explorer.html", "explorer_hetero.png"),
    "transformer": ("transformer_explorer.py", "transformer_explorer.html",
                    "explorer_transformer.png"),
}


def example_screenshot(page: str, work: Path, out: Path) -> Path:
    """Runs the example writing ``page`` and photographs what it wrote."""
    script, html, picture = EXAMPLE_PAGES[page]
    examples = DOCS.parent / "examples"
    subprocess.run([sys.executable, str(examples / script), "--out", str(work)], check=True,
                   cwd=examples, capture_output=True, timeout=900)
    screenshot(work / html, out / picture, size="1200,780")
    return out / picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="output of 'pyg-attn train' (default: train 60 epochs now)")
    parser.add_argument("--node", type=int, default=22, help="centre node (default 22)")
    parser.add_argument("--out", type=Path, default=DOCS / "_static")
    parser.add_argument("--pages", nargs="+", default=["graph", *EXAMPLE_PAGES],
                        choices=["graph", *EXAMPLE_PAGES], help="which screenshots (default all)")
    args = parser.parse_args()
    for page in [p for p in args.pages if p in EXAMPLE_PAGES]:
        with tempfile.TemporaryDirectory() as work:
            print(f"wrote {example_screenshot(page, Path(work), args.out)}")
    if "graph" not in args.pages:
        return
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
