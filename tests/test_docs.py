"""The documentation builds offline with warnings as errors and covers the package.

The docstrings' examples run as doctests in the same pytest session
(``--doctest-modules`` over ``pyg_attn``, see ``pyproject.toml``).
"""
from __future__ import annotations

import os
import re
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


#: Product folders and files: what users read, where nothing may point outside the repo.
PRODUCT = ["pyg_attn", "README.md", "docs", "examples", "benchmarks", "tests"]
#: Mentions of the project's internal notes: a guide outside the repository, issue
#: numbers, closing notes.  Conventions are cited as docs/guide/conventions.md.
OUTSIDE_REFERENCE = re.compile(r"GUIDE|issue[ -]?#?[0-9]|closing note|\.\./shared")


def product_files() -> list:
    """Text files of the product (source, docs, examples, benchmarks, tests)."""
    files = []
    for name in PRODUCT:
        path = REPO / name
        candidates = [path] if path.is_file() else path.rglob("*")
        files += [p for p in candidates if p.is_file() and "_build" not in p.parts
                  and "__pycache__" not in p.parts
                  and p.suffix in {".py", ".md", ".txt", ".rst", ".cpp", ".h", ".sh", ".toml",
                                   ".csv", ".json", ".in", ""}]
    return files


def test_no_product_file_points_to_notes_outside_the_repository() -> None:
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in product_files()
             for number, line in enumerate(path.read_text(encoding="utf-8",
                                                          errors="replace").splitlines(), 1)
             if OUTSIDE_REFERENCE.search(line) and path != Path(__file__)]
    assert not found, "\n".join(found)


def accuracy_rows(text: str) -> list:
    """The like-for-like accuracy table's rows (``| Cora | shared | gat | ... |``)."""
    return [line for line in text.splitlines()
            if re.match(r"\| (Cora|CiteSeer) \| (shared|per_head) \| ", line)]


def test_readme_accuracy_table_is_the_committed_result() -> None:
    results = REPO / "benchmarks" / "results" / "planetoid-cpu.md"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "benchmarks/results/planetoid-cpu.md" in readme
    expected = accuracy_rows(results.read_text(encoding="utf-8"))
    assert expected and accuracy_rows(readme) == expected
    assert {row.split(" | ")[1] for row in expected} == {"shared", "per_head"}
    assert all("not run" not in row for row in expected)
