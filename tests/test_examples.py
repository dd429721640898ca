"""Runs every ``examples/*.py`` script end to end, with small settings.

Each script runs as a subprocess (a fresh interpreter, as a user would run it),
with a cache and an output folder in ``tmp_path``.  A script that accepts
``--quick`` gets it; one that accepts ``--out`` gets ``--out <tmp>`` and must
write something there, every PNG of which must be a non-blank picture.  New
examples are picked up by the glob; give one smaller settings in ``SMALL_ARGS``
or expectations in ``EXPECTED`` if it needs them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.py"))

#: Arguments that make a script quick, where ``--quick`` is not what it takes.
SMALL_ARGS = {
    "cora_attention.py": ["--epochs", "5"],
}
#: Per script: (glob of files it must write under --out, text its output must contain).
EXPECTED = {
    "cora_attention.py": ("cora_attention_node*.png", "test accuracy"),
}
TIMEOUT_S = 600  # generous: the first run may compile the fused CPU kernel


def script_args(script: Path, out: Path) -> list[str]:
    source = script.read_text(encoding="utf-8")
    args = list(SMALL_ARGS.get(script.name, []))
    if not args and "--quick" in source:
        args.append("--quick")
    if "--out" in source:
        args += ["--out", str(out)]
    return args


def assert_not_blank(png: Path) -> None:
    image = matplotlib.image.imread(png)
    assert image.size > 0, f"{png} is empty"
    assert np.unique(image).size > 1, f"{png} is blank (one pixel value)"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = script_args(script, out)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    env["PYG_ATTN_CACHE"] = str(tmp_path / "cache")  # never the user's cache
    env.pop("PYG_ATTN_DATA", None)                  # the shipped data sets
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=TIMEOUT_S)
    log = f"$ {script.name} {' '.join(args)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert result.returncode == 0, log

    pattern, text = EXPECTED.get(script.name, (None, None))
    if text is not None:
        assert text in result.stdout, log
    if "--out" in args:
        written = [p for p in out.rglob("*") if p.is_file()]
        assert written, f"{script.name} wrote nothing to --out\n{log}"
        if pattern is not None:
            assert list(out.glob(pattern)), f"no {pattern} in {out}\n{log}"
        for png in (p for p in written if p.suffix.lower() == ".png"):
            assert_not_blank(png)


def test_examples_are_found() -> None:
    assert "cora_attention.py" in [path.name for path in EXAMPLES]
