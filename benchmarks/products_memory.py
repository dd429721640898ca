#!/usr/bin/env python
"""Does a full-batch GATConv training step fit in memory at ogbn-products size?

Builds a synthetic power-law graph of ogbn-products' size (2,449,029 nodes,
61,859,140 directed edges; ``common.make_graph``) with F=100 input features,
runs one ``GATConv(100, 8, heads=8)`` forward + backward (parameter gradients,
self-loops added by the layer as in PyG) and prints the process' peak resident
memory (VmHWM, the whole process: graph, features, layer, everything), the part
of it taken by the step itself, and the time of the step.

PyG's GATConv is not run at this size: it materialises several ``[E', H, C]``
float32 tensors (gathered ``x_j``, the messages, their gradients), each
``E' * 8 * 8 * 4`` bytes = 2.0 GB here, plus ``[E', H]`` tensors and the
autograd graph; ``--scale 0.05`` runs both providers on a 5 % graph so their
peaks can be compared and extrapolated.

    python benchmarks/products_memory.py                   # ours, full size (~1 min, ~10 GB)
    python benchmarks/products_memory.py --scale 0.05 --provider pyg
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from common import make_graph, proc_status_kb  # noqa: E402

PRODUCTS_NODES = 2_449_029
PRODUCTS_EDGES = 61_859_140
FEATURES, HEADS, CHANNELS = 100, 8, 8


def rss_gb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in GiB."""
    return (proc_status_kb(field) or 0) / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of the products size (nodes and edges), default 1")
    parser.add_argument("--provider", choices=("pyg_attn", "pyg"), default="pyg_attn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zipf", type=float, default=1.0, help="in-degree exponent")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")

    import torch

    torch.set_num_threads(args.threads)
    num_nodes = int(PRODUCTS_NODES * args.scale)
    num_edges = int(PRODUCTS_EDGES * args.scale)
    if args.provider == "pyg":
        from torch_geometric.nn import GATConv
    else:
        from pyg_attn.nn import GATConv

    torch.manual_seed(0)
    layer = GATConv(FEATURES, CHANNELS, heads=HEADS)
    t0 = time.perf_counter()
    edge_index, stats = make_graph(num_nodes, num_edges, seed=0, exponent=args.zipf)
    x = torch.randn(num_nodes, FEATURES)
    print(f"graph: {num_nodes:,} nodes, {num_edges:,} edges (max in-degree "
          f"{stats['max_in_degree']:,}), built in {time.perf_counter() - t0:.1f} s")

    # Reset the high-water mark: the graph generator's numpy temporaries are not ours.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_gb("VmRSS")
    t0 = time.perf_counter()
    layer(x, edge_index).sum().backward()
    step_s = time.perf_counter() - t0
    peak = rss_gb("VmHWM")
    print(f"{args.provider} GATConv({FEATURES}, {CHANNELS}, heads={HEADS}) forward+backward: "
          f"{step_s:.1f} s (first step, includes building the CSR)")
    print(f"peak resident memory: {peak:.2f} GiB for the whole process "
          f"({before:.2f} GiB of graph, features and layer before the step, "
          f"{peak - before:.2f} GiB added by the step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
