#!/usr/bin/env python
"""How much of a molecule-batch training step the fused attention kernels take.

``bench_workloads.py`` compares our model with its floor: the same model with each
attention layer replaced by its linear projections alone.  Whatever a layer adds to
its projections (graph build, GAT's node logits, the attention op, Python, the
optimizer's extra parameters) makes ``ours / floor`` exceed 1.  This script times,
on the same batches and alternating step by step, three things:

* ``ours``: a training step of our model (forward, loss, backward, Adam);
* ``floor``: the same step of the floor model;
* ``kernels``: the attention ops alone, forward and backward, once per layer, on
  each layer's graph (self-loops as the layer adds them, prepared outside the
  timed region) with leaf inputs of the layer's shapes.

``(floor + kernels) / floor`` is then what ``ours / floor`` would be if every other
cost a layer adds were zero: a lower bound for layers built on these kernels.  The
molecule batches (``bench_workloads.py``'s ``molecules``: 128 graphs of 12-40 nodes,
F=16, 3 layers of 8 heads x 8, global mean pooling) carry a loss on every node and
have no dropout, so the ops alone do the work they do inside the layers.

    python benchmarks/bench_kernel_share.py --out benchmarks/results/kernel-share-cpu
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_workloads  # noqa: E402  (puts the repository root on sys.path)
import common  # noqa: E402

LAYERS = bench_workloads.LAYERS
#: The layers that add self-loops to the graph their attention op sees.
LOOPED = ("GATConv", "GATv2Conv")


def kernel_step(layer: str, b: bench_workloads.Batch, num_layers: int) -> Callable[[], None]:
    """The attention ops of ``num_layers`` layers of kind ``layer`` on ``b``'s graph,
    forward and backward (a fixed random output gradient), ready to time."""
    import torch
    from torch_geometric.utils import add_self_loops, remove_self_loops

    from pyg_attn.ops import gat_attention, gatv2_attention, graph_attention, prepare

    heads, channels = bench_workloads.HEADS, bench_workloads.HIDDEN
    num_nodes = b.x.size(0)
    edge_index = b.edge_index
    if layer in LOOPED:
        edge_index = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)[0]
    graph = prepare(edge_index, num_nodes=num_nodes)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, requires_grad=True)

    node, row = (num_nodes, heads, channels), (num_nodes, heads)
    if layer == "GATConv":
        op, shapes = gat_attention, (row, row, node)
    elif layer == "GATv2Conv":
        op, shapes = gatv2_attention, (node, node, (heads, channels))
    else:
        op, shapes = graph_attention, (node, node, node)
    inputs = [[leaf(*shape) for shape in shapes] for _ in range(num_layers)]
    grad_out = torch.randn(num_nodes, heads, channels)

    def run() -> None:
        for args in inputs:
            op(*args, graph).backward(grad_out)

    return run


def measure(layer: str, steps: int, warmup: int, quick: bool) -> dict:
    """Median ms of our step, the floor's and the kernels', alternating per batch."""
    workload = bench_workloads.build_workload("molecules", quick)
    models = bench_workloads.build_models(layer, workload, floor=True)
    del models["pyg"]
    steppers: dict[str, Callable[[bench_workloads.Batch], object]] = {
        p: bench_workloads.make_step(m) for p, m in models.items()}
    times: dict[str, list[float]] = {p: [] for p in (*steppers, "kernels")}
    for i, b in enumerate(workload.batches(warmup + steps)):
        timed: dict[str, Callable[[], object]] = {p: partial(s, b) for p, s in steppers.items()}
        timed["kernels"] = kernel_step(layer, b, workload.num_layers)
        order = list(timed) if i % 2 == 0 else list(timed)[::-1]
        for provider in order:
            start = time.perf_counter()
            timed[provider]()
            if i >= warmup:
                times[provider].append(1e3 * (time.perf_counter() - start))
    ours, floor, kernels = (statistics.median(times[p]) for p in ("pyg_attn", "floor", "kernels"))
    return {"layer": layer, "ours_ms": ours, "floor_ms": floor, "kernels_ms": kernels,
            "steps": steps}


def markdown(rows: list[dict], env: dict, command: str) -> str:
    lines = ["# The fused kernels' share of a molecule-batch step (CPU)", "",
             *common.environment_rows(env, command), "",
             "ms = median over alternating steps; ours / floor as in `bench_workloads.py`; "
             "kernels = the attention ops alone (forward and backward, every layer); "
             "(floor + kernels) / floor = the lowest ours / floor the kernels allow.", "",
             "| layer | ours ms | floor ms | kernels ms | ours / floor | kernels / floor | "
             "(floor + kernels) / floor | steps |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        floor = r["floor_ms"]
        lines.append(f"| {r['layer']} | {r['ours_ms']:.2f} | {floor:.2f} | {r['kernels_ms']:.2f} | "
                     f"{r['ours_ms'] / floor:.2f} | {r['kernels_ms'] / floor:.2f} | "
                     f"{(floor + r['kernels_ms']) / floor:.2f} | {r['steps']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--steps", type=int, default=60, help="timed steps (default 60)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (default 10)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--quick", action="store_true", help="small batches: a smoke test")
    p.add_argument("--out", metavar="PATH", help="write PATH.md")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be at least 1 and --warmup at least 0")
    import torch

    torch.set_num_threads(args.threads)
    env = bench_workloads.environment(args.threads)
    rows = [measure(layer, args.steps, args.warmup, args.quick) for layer in args.layers]
    command = ("python benchmarks/bench_kernel_share.py " + " ".join(argv)).strip()
    common.publish(markdown(rows, env, command), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
