"""The training modules import each other without a cycle (module level or inside functions)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pyg_attn

ROOT = Path(pyg_attn.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_modules(path: Path, known: Set[str]) -> Set[str]:
    """The pyg_attn modules ``path`` imports anywhere in its code (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path).split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph() -> Dict[str, Set[str]]:
    files = {module_name(path): path for path in ROOT.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def cycles_through(graph: Dict[str, Set[str]], prefix: str) -> List[List[str]]:
    """One import cycle (a path back to its start) per module under ``prefix`` that has one."""
    found = []
    for start in sorted(name for name in graph if name.startswith(prefix)):
        stack, seen = [[start]], set()
        while stack:
            path = stack.pop()
            for nxt in sorted(graph[path[-1]]):
                if nxt == start:
                    found.append(path + [start])
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(path + [nxt])
    return found


def test_the_import_graph_is_read():
    graph = import_graph()
    assert "pyg_attn.training.shard" in graph["pyg_attn.training.node_classification"]
    assert "pyg_attn.training.checkpoint" in graph["pyg_attn.training.metrics"]
    assert cycles_through({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == [["a", "b", "c", "a"]]


def test_no_import_cycle_through_the_training_modules():
    assert cycles_through(import_graph(), "pyg_attn.training") == []
