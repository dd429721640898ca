"""Speed up an existing PyG model in one line: swap its attention layers with ``replace_layers``.

Builds a model the way a PyG user would (``torch_geometric.nn`` imports only): a
``GATConv`` -> ``TransformerConv`` -> ``GATv2Conv`` stack, times a few training
steps on a random power-law graph, then calls :func:`pyg_attn.nn.replace_layers`,
which swaps every PyG ``GATConv`` / ``GATv2Conv`` / ``TransformerConv`` inside for
the pyg_attn twin holding the same parameters.  The script checks that the output
is unchanged (dropout off) and prints the time per step before and after.  Timings
depend on the machine and its load; ``benchmarks/bench_layers.py`` measures the
layers properly (one provider per process, peak memory too).

    python examples/15_replace_layers.py                 # 20,000 nodes, 200,000 edges
    python examples/15_replace_layers.py --quick         # small graph, for the tests
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv, GATv2Conv, TransformerConv

from pyg_attn.nn import replace_layers


class PyGModel(torch.nn.Module):
    """What a PyG user wrote: three attention layers with ELU between them."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, heads: int) -> None:
        super().__init__()
        self.conv1 = GATConv(in_channels, hidden, heads=heads)
        self.conv2 = TransformerConv(hidden * heads, hidden, heads=heads)
        self.conv3 = GATv2Conv(hidden * heads, out_channels, heads=1)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        x = F.elu(self.conv1(x, edge_index))
        x = F.elu(self.conv2(x, edge_index))
        return self.conv3(x, edge_index)


def power_law_graph(num_nodes: int, num_edges: int, seed: int = 0) -> Tensor:
    """Random edges whose destinations follow a Zipf-like law (a few hubs)."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-1.0)
    dst = torch.randperm(num_nodes, generator=generator)[
        torch.multinomial(weight, num_edges, replacement=True, generator=generator)]
    src = torch.randint(0, num_nodes, (num_edges,), generator=generator)
    return torch.stack([src, dst])


def seconds_per_step(model: torch.nn.Module, x: Tensor, edge_index: Tensor, y: Tensor,
                     steps: int) -> float:
    """Median wall time of a training step (forward, loss, backward, Adam)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    times = []
    for _ in range(steps + 1):  # the first step builds caches: not timed
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(x, edge_index), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--edges", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--quick", action="store_true", help="2,000 nodes, 20,000 edges, 2 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.edges, args.steps = 2_000, 20_000, 2

    torch.manual_seed(0)
    features, classes = 64, 10
    x = torch.randn(args.nodes, features)
    y = torch.randint(0, classes, (args.nodes,))
    edge_index = power_law_graph(args.nodes, args.edges)
    model = PyGModel(features, 16, classes, heads=8)

    pyg_step = seconds_per_step(model.train(), x, edge_index, y, args.steps)
    model.eval()
    with torch.no_grad():
        before = model(x, edge_index)

    replace_layers(model)  # in place: same parameter objects, pyg_attn layers
    print("after replace_layers:", ", ".join(
        f"{name}={type(module).__module__.split('.')[0]}.{type(module).__name__}"
        for name, module in model.named_children()))
    with torch.no_grad():
        after = model(x, edge_index)
    error = float((after - before).abs().max())
    print(f"graph: {args.nodes:,} nodes, {args.edges:,} edges; output shape {tuple(after.shape)}")
    print(f"same output as before the swap: max |difference| = {error:.2e}")
    assert error < 1e-4, "replace_layers changed the model's output"
    ours_step = seconds_per_step(model.train(), x, edge_index, y, args.steps)
    print(f"training step: PyG {pyg_step * 1e3:.1f} ms, pyg_attn {ours_step * 1e3:.1f} ms "
          f"({pyg_step / ours_step:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
