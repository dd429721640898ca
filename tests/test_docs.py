"""The documentation builds offline with warnings as errors and covers the package.

The docstrings' examples run as doctests in the same pytest session
(``--doctest-modules`` over ``pyg_attn``, see ``pyproject.toml``).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"

pytest.importorskip("sphinx", reason="the docs extra is not installed")
pytest.importorskip("myst_parser", reason="the docs extra is not installed")


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    env = dict(os.environ, MPLBACKEND="Agg", PYG_ATTN_CACHE=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "html" / "index.html").is_file()


def test_every_user_guide_page_is_in_a_toctree() -> None:
    pages = {path.relative_to(DOCS).with_suffix("").as_posix()
             for path in DOCS.rglob("*.md") if "_build" not in path.parts}
    listed = set()
    for path in DOCS.rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        for block in text.split("```{toctree}")[1:]:
            body = block.split("```", 1)[0]
            base = path.parent.relative_to(DOCS)
            listed |= {(base / line.strip()).as_posix().lstrip("./")
                       for line in body.splitlines()
                       if line.strip() and not line.strip().startswith(":")}
    assert pages - {"index"} <= listed, f"pages in no toctree: {sorted(pages - {'index'} - listed)}"


def test_every_example_is_on_the_examples_page() -> None:
    page = (DOCS / "examples.md").read_text(encoding="utf-8")
    missing = [path.name for path in sorted((REPO / "examples").glob("*.py"))
               if f"../examples/{path.name}" not in page]
    assert not missing, f"examples not on docs/examples.md: {missing}"
