"""README.md's performance figures are the ones generated from benchmarks/results/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_performance_block_is_generated_from_the_results():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_performance.py"),
                           "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_result_file_named_in_the_block_exists_and_names_its_machine():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- performance:begin -->", 1)[1].split("<!-- performance:end -->")[0]
    names = {part.split(")")[0] for part in block.split("](")[1:]}
    assert names, "the performance block cites no result file"
    for name in names:
        path = ROOT / name
        assert path.exists(), name
        if path.suffix == ".md":
            content = path.read_text()
            assert "commit" in content and ("cpu" in content or "device" in content), name
