#!/usr/bin/env python
"""Where the GPU time of the Triton path goes, at arxiv size (one process, CUDA).

``torch.profiler`` tables (CUDA kernels, by total device time) of one
``graph_attention`` training step and one ``GATConv`` training step, ours and
PyG's, with the device time of all kernels against the step's wall time (the
difference is host overhead the GPU waits for).

Launch configurations are timed kernel by kernel by ``tune_gpu.py``.

    python benchmarks/profile_gpu.py > profile.txt
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_gpu import HEADS, SIZES, Timer, make_graph, op_inputs, ours_op, step  # noqa: E402


def profiled(name: str, fn, timer: Timer, steps: int = 5) -> None:
    ms, _ = timer.median_ms(fn)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        timer.sync()
    events = prof.key_averages()
    key = "device_time_total" if hasattr(events[0], "device_time_total") else "cuda_time_total"
    device_us = sum(getattr(e, key) for e in events) / steps
    print(f"\n=== {name}: {ms:.3f} ms per step (events), kernels {device_us / 1e3:.3f} ms per step")
    print(events.table(sort_by=key, row_limit=14, max_name_column_width=60))


def main() -> int:
    device = torch.device("cuda")
    timer = Timer(device, 0.3, 50)
    n, e, feats = SIZES["arxiv"]
    edge_index = make_graph(n, e, 0, 0.7, device)

    from pyg_attn.ops import prepare

    graph = prepare(edge_index, num_nodes=n)
    t = op_inputs("dot", n, 16, device, 1)
    grad_out = torch.randn(n, HEADS, 16, device=device)

    def op_step():
        for x in t.values():
            x.grad = None
        ours_op("dot", t, graph).backward(grad_out)

    profiled("ours graph_attention fwd+bwd (dot, C=16)", op_step, timer)

    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    x = torch.randn(n, feats, device=device)
    for provider, nn in (("ours", our_nn), ("pyg", pyg_nn)):
        torch.manual_seed(0)
        layer = nn.GATConv(feats, 8, heads=HEADS).to(device)
        layer_step = step(lambda layer=layer: layer(x, edge_index), list(layer.parameters()))
        profiled(f"{provider} GATConv({feats}, 8, heads=8) training step", layer_step, timer)

    return 0


if __name__ == "__main__":
    sys.exit(main())
