#!/usr/bin/env python
"""The fixed cost of one layer call: a 30-node graph, ours against PyG's.

On a tiny graph the arithmetic is nothing and what is left is the per-call work a
layer does before and after its kernels: argument checks, graph preparation (our
CSR/CSC with self-loops, built on every call since nothing is cached), dispatch.
Each layer (8 -> 2 heads x 4, 30 nodes, 90 edges, a new ``edge_index`` tensor every
call, as a user's loop gives) is timed in evaluation mode under ``torch.no_grad``
(forward) and in training mode (forward + backward of a sum), alternating ours and
PyG's call by call; the median of many calls is reported with the ratio PyG / ours
(above 1: ours is cheaper).

    python benchmarks/bench_call_overhead.py --out benchmarks/results/call-overhead-cpu
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402  (also puts the repository root on sys.path)

LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")
NUM_NODES, NUM_EDGES, IN_CHANNELS = 30, 90, 8


def measure(layer: str, mode: str, calls: int) -> dict:
    """Median microseconds per call of PyG's and our ``layer`` in ``mode``."""
    import torch
    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    torch.manual_seed(0)
    pyg = getattr(pyg_nn, layer)(IN_CHANNELS, 4, heads=2)
    ours = getattr(our_nn, layer)(IN_CHANNELS, 4, heads=2)
    ours.load_state_dict(pyg.state_dict())
    x = torch.randn(NUM_NODES, IN_CHANNELS, requires_grad=mode == "train")
    edge_index = torch.randint(0, NUM_NODES, (2, NUM_EDGES))
    models = {"pyg": pyg, "pyg_attn": ours}
    for model in models.values():
        model.train(mode == "train")

    def call(model: torch.nn.Module) -> None:
        ei = edge_index.clone()  # a new tensor every call
        if mode == "train":
            model(x, ei).sum().backward()
        else:
            with torch.no_grad():
                model(x, ei)

    times: dict[str, list[float]] = {p: [] for p in models}
    order = list(models)
    for i in range(calls + calls // 10):
        for provider in (order if i % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            call(models[provider])
            if i >= calls // 10:  # warm-up calls first
                times[provider].append(1e6 * (time.perf_counter() - start))
    pyg_us, ours_us = (statistics.median(times[p]) for p in ("pyg", "pyg_attn"))
    return {"layer": layer, "mode": mode, "pyg_us": pyg_us, "ours_us": ours_us,
            "speedup": pyg_us / ours_us}


def markdown(rows: list[dict], env: dict, command: str) -> str:
    lines = ["# Fixed cost of one layer call: pyg_attn vs PyG (CPU)", "",
             *common.environment_rows(env, command), "",
             f"A {NUM_NODES}-node, {NUM_EDGES}-edge graph (a new `edge_index` tensor per "
             f"call), {IN_CHANNELS} -> 2 heads x 4; median microseconds per call; "
             "speed-up = PyG / ours.",
             "", "| layer | mode | ours us | PyG us | speed-up |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['mode']} | {r['ours_us']:.0f} | {r['pyg_us']:.0f} | "
                     f"{r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--calls", type=int, default=2000, help="timed calls per provider")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", metavar="PATH", help="write PATH.md")
    args = p.parse_args(argv)
    if args.calls < 10:
        p.error("--calls must be at least 10")
    import torch

    torch.set_num_threads(args.threads)
    common.resolve_vml_dispatch()
    env = {"cpu": common.cpu_name(), "python": platform.python_version(), **common.versions(),
           "threads": args.threads, "commit": common.git_state(),
           "load average": common.load_average()}
    rows = [measure(layer, mode, args.calls) for layer in args.layers
            for mode in ("eval", "train")]
    command = ("python benchmarks/bench_call_overhead.py " + " ".join(argv)).strip()
    common.publish(markdown(rows, env, command), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
