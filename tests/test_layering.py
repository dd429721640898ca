"""Modules share helpers by public names only: no module imports another one's
private (underscore) names or reaches into them through an attribute."""
from __future__ import annotations

import ast
from pathlib import Path

import pyg_attn

ROOT = Path(pyg_attn.__file__).parent


def private_uses(path: Path) -> list[str]:
    """``from x import _name`` and ``module._name`` uses of pyg_attn modules in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = set()  # local names bound to pyg_attn modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pyg_attn")):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                           if alias.name.startswith("pyg_attn"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_names_cross_modules():
    found = [use for path in sorted(ROOT.rglob("*.py")) for use in private_uses(path)]
    assert found == []


def test_the_check_sees_private_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from .csr import _build, prepare\nfrom . import csr\ncsr._graph(1)\n")
    assert private_uses(sample) == ["sample.py:1 imports _build", "sample.py:3 uses csr._graph"]
