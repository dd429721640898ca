#!/usr/bin/env python
"""Writes README.md's performance figures from the committed result files.

The block between ``<!-- performance:begin -->`` and ``<!-- performance:end -->``
in README.md is generated from ``benchmarks/results/``:

* ``workloads-cpu.csv`` (``bench_workloads.py``): one training step per workload
  and layer, ours against PyG with the import swapped;
* ``ops-cpu.csv`` / ``layers-cpu.csv`` (``bench_ops.py`` / ``bench_layers.py
  --csv``) with the printed report beside them (``.txt``), when present: forward+backward against PyG's default and fastest path;
* ``gpu-h200.json`` (``bench_gpu.py --json``): the H200 figures.

Every sentence names the file it comes from and the machine it was measured on.

    python benchmarks/readme_performance.py           # rewrite the block in README.md
    python benchmarks/readme_performance.py --check   # exit 1 if README.md is stale
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEGIN, END = "<!-- performance:begin -->", "<!-- performance:end -->"
LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")


def _rows(name: str) -> list[dict]:
    path = RESULTS / name
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _span(values, fmt="{:.1f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else \
        f"{fmt.format(low)}-{fmt.format(high)}"


def workloads_block() -> list[str]:
    rows = _rows("workloads-cpu.csv")
    if not rows:
        return []
    env = rows[0]
    lines = [f"Training steps on the workloads PyG users run "
             f"([benchmarks/results/workloads-cpu.md](benchmarks/results/workloads-cpu.md), "
             f"`bench_workloads.py`: one model written once, `torch_geometric.nn` vs "
             f"`pyg_attn.nn` layers, same weights and batches, median of "
             f"{env['steps']} alternating steps; {env['cpu']}, {env['threads']} threads, "
             f"torch {env['torch']}, PyG {env['torch_geometric']}, commit {env['commit']}). "
             "Speed-up = PyG ms / ours ms per step; memory = our peak extra memory / PyG's; "
             "/ floor = step time over that of the same model with each attention layer "
             "replaced by its linear projections alone (ours, PyG), per layer in the order "
             "of the columns:", "",
             "| workload | " + " | ".join(LAYERS) + " | memory | ours / floor | PyG / floor |",
             "| --- | " + " | ".join("---" for _ in LAYERS) + " | --- | --- | --- |"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        cells = {r["layer"]: r for r in rows if r["workload"] == workload}
        speed = [f"{_num(cells[l]['speedup']):.2f}x" if l in cells else "-" for l in LAYERS]
        memory = _span([_num(r["memory_ratio"]) for r in cells.values()], "{:.2f}")
        lines.append(f"| {workload} | " + " | ".join(speed) + f" | {memory} | "
                     f"{_per_layer(cells, 'ours_floor')} | {_per_layer(cells, 'pyg_floor')} |")
    compiled = [_num(r.get("compiled_eager")) for r in rows]
    if any(c is not None for c in compiled):
        lines += ["", "Our model under `torch.compile(dynamic=True)` against eager, step time "
                  f"ratio compiled / eager over these cells: {_span(compiled, '{:.2f}')}."]
    return lines + [""]


def _per_layer(cells: dict, field: str) -> str:
    """``field`` of each layer's row, in :data:`LAYERS` order, as ``a / b / c``."""
    values = [_num(cells[layer].get(field)) for layer in LAYERS if layer in cells]
    return " / ".join("-" if v is None else f"{v:.2f}" for v in values)


def _report_facts(name: str) -> dict:
    """Machine, command and commit from the text report (``<name>.txt``) that the
    benchmark printed beside its CSV."""
    path = RESULTS / name
    facts = {"cpu": "?", "command": "?", "commit": "?"}
    if not path.exists():
        return facts
    for line in path.read_text().splitlines():
        if line.startswith(("cpu: ", "command: ")):
            key, value = line.split(": ", 1)
            facts[key] = value
        elif "pyg_attn at git " in line and facts["commit"] == "?":
            facts["commit"] = line.split("pyg_attn at git ", 1)[1].split()[0]
    return facts


def kernels_block() -> list[str]:
    lines = []
    for stem, what in (("ops-cpu", "the fused ops"),
                       ("layers-cpu", "one layer (its projections included)")):
        rows = [r for r in _rows(f"{stem}.csv")
                if r["provider"] == "pyg_attn" and r["mode"] == "full"]
        if not rows:
            continue
        facts = _report_facts(f"{stem}.txt")
        sizes = ", ".join(dict.fromkeys(r["size"] for r in rows))
        channels = ", ".join(dict.fromkeys(r["channels"] for r in rows if r.get("channels")))
        lines.append(
            f"Forward+backward of {what} ([benchmarks/results/{stem}.txt]"
            f"(benchmarks/results/{stem}.txt) and `.csv`: `{facts['command']}`; "
            f"{facts['cpu']}, {rows[0]['threads']} threads, commit {facts['commit']}; sizes "
            f"{sizes}" + (f", C = {channels}" if channels else "") + "): "
            f"{_span(_num(r['speedup_vs_pyg']) for r in rows)}x faster than PyG's default path "
            f"and {_span(_num(r['speedup_vs_best']) for r in rows)}x faster than its fastest "
            f"path (the default or the CSR one, per row), with "
            f"{_span((_num(r['mem_ratio_vs_pyg']) for r in rows), '{:.2f}')}x "
            "its peak memory (our prepared graph included).")
        lines.append("")
    return lines


def gpu_block() -> list[str]:
    path = RESULTS / "gpu-h200.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    rows, env = data["rows"], data["env"]

    def pick(table, size, mode):
        out = {}
        for r in rows:
            if (r["table"], r["size"], r["mode"]) == (table, size, mode):
                out.setdefault(r["what"], {})[r["provider"]] = r
        return out

    def ratios(cells, field):
        vals = []
        for by in cells.values():
            ours, pyg = by.get("pyg_attn", {}), by.get("pyg", {})
            if ours.get(field) and pyg.get(field):
                vals.append(pyg[field] / ours[field] if field == "ms" else ours[field] / pyg[field])
        return vals

    ops, layers = pick("ops", "arxiv", "full"), pick("layers", "arxiv", "full")
    products = pick("layers", "products", "full").get("GATConv", {})
    ours_p, pyg_p = products.get("pyg_attn", {}), products.get("pyg", {})
    text = (f"On an {env['device']} ([benchmarks/results/gpu-h200.md]"
            f"(benchmarks/results/gpu-h200.md), `bench_gpu.py`, Triton {env['triton']}, "
            f"torch {env['torch']}): at arxiv size the ops' forward+backward is "
            f"{_span(ratios(ops, 'ms'))}x faster than PyG-style attention with "
            f"{_span(ratios(ops, 'peak_mb'), '{:.2f}')}x its memory, the layers' training step "
            f"{_span(ratios(layers, 'ms'))}x faster with "
            f"{_span(ratios(layers, 'peak_mb'), '{:.2f}')}x the memory")
    if ours_p.get("ms") and pyg_p.get("ms"):
        text += (f"; a full-batch `GATConv` step at ogbn-products size (2.45M nodes, 61.9M "
                 f"edges) takes {ours_p['ms']:.0f} ms and {ours_p['peak_mb'] / 1024:.1f} GiB "
                 f"beside its inputs where PyG's takes {pyg_p['ms']:.0f} ms and "
                 f"{pyg_p['peak_mb'] / 1024:.0f} GiB")
    return [text + ".", ""]


def block() -> str:
    lines = workloads_block() + kernels_block() + gpu_block()
    return "\n".join([BEGIN, *lines, END])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if README.md is not current")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = p.parse_args(argv)
    text = args.readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{args.readme} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + block() + tail
    if args.check:
        if new != text:
            print("README.md's performance block is stale: run "
                  "python benchmarks/readme_performance.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
