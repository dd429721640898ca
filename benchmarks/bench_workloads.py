#!/usr/bin/env python
"""Training steps on the workloads PyG users run, with PyG's layers and with ours.

One model is written once (:class:`Net`: attention layers, ELU, a linear head,
global mean pooling for graph classification) and built twice, with the layer
class taken from ``torch_geometric.nn`` and from ``pyg_attn.nn`` (the only
difference), with the same weights. Both see the same batches; their steps
(forward, cross-entropy, backward, Adam step) alternate, and the median of the
timed steps after a warm-up is reported. Attention dropout is 0 on both sides,
except in the ``-dropout`` recipes, where both sides drop the input of every
layer and the attention weights with p = 0.6 (PyG's ``examples/gat.py``).

A third model, the **floor**, replaces every attention layer by its linear
projections alone (GATConv: ``lin``; GATv2Conv: ``lin_l``, ``lin_r``;
TransformerConv: query, key, value and skip; summed to the layer's output
shape): the same parameters and dense products without any message passing, so
no layer can take a cheaper step.  It runs in the same alternation, and the table
gives ours / floor and PyG / floor.  ``--compile`` adds our model under
``torch.compile(dynamic=True)`` to the alternation (compiled / eager ratio; no
dynamo settings needed: GAT's self-loops and the attention dropout stay in the graph).

Workloads:

``neighbor``
    ``NeighborLoader`` mini-batches (fan-out [10, 10], batch size 1024) of a
    100k-node power-law graph with 1M edges, F=128: a new sampled subgraph
    every step (needs ``torch_sparse`` or ``pyg-lib``; skipped otherwise).
``molecules``
    batches of 128 molecule-sized graphs (12-40 nodes, a chain with ring
    closures, both directions), F=16, 3 layers, global mean pooling: a new
    ``Batch`` every step.
``cora``
    the full Cora graph (2,708 nodes, 1,433 features, 1.3 % non-zero), the same
    ``edge_index`` every step.
``cora-dropout``
    the GAT recipe of PyG's ``examples/gat.py`` on Cora: row-normalised features,
    input dropout 0.6 before every layer (a new ``x`` every step) and attention
    dropout 0.6.
``neighbor-dropout``
    the ``neighbor`` batches with the same input and attention dropout.
``50k`` / ``arxiv`` (``-cached`` / ``-uncached``)
    power-law graphs of 50k nodes / 500k edges (F=64) and 169,343 / 1,166,243
    (F=128), full batch; ``-uncached`` hands the layers a fresh ``edge_index``
    tensor every step (a copy made outside the timed region), so nothing
    prepared for one step is reused by the next.

Layers: ``GATConv``, ``GATv2Conv``, ``TransformerConv`` (8 heads x 8 channels).
Memory: each (workload, layer, provider) runs again in a fresh interpreter that
initialises the libraries on a 16-node batch, resets the peak resident set, and
reports the peak extra memory of its first three steps (one-time allocations a
provider keeps, such as a cached CSR, included). Before timing, both models' eval-mode outputs on the
first batch are compared (max abs error <= 1e-4); the script exits with 1 if
any check fails.

    python benchmarks/bench_workloads.py                     # everything, 2 threads
    python benchmarks/bench_workloads.py --quick --workloads molecules cora
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402  (also puts the repository root on sys.path)

WORKLOADS = ("neighbor", "neighbor-dropout", "molecules", "cora", "cora-dropout",
             "50k-uncached", "50k-cached", "arxiv-uncached", "arxiv-cached")
RECIPE_DROPOUT = 0.6
#: The linear projections of each layer, for the floor model.
FLOOR_PROJECTIONS = {"GATConv": ("lin",), "GATv2Conv": ("lin_l", "lin_r"),
                     "TransformerConv": ("lin_query", "lin_key", "lin_value", "lin_skip")}
LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")
HEADS, HIDDEN, NUM_CLASSES = 8, 8, 10
CHECK_TOL = 1e-4
FULL_GRAPHS = {"50k": (50_000, 500_000, 64), "arxiv": (169_343, 1_166_243, 128)}


# ============================================================================ model
def floor_conv(layer: str):
    """The floor stand-in of ``layer``: a module with the layer's projections
    (same names, shapes and biases) whose output is their sum, ``[N, H * C]``."""
    import torch

    class Projections(torch.nn.Module):
        def __init__(self, in_channels: int, out_channels: int, heads: int, dropout: float):
            super().__init__()
            width = heads * out_channels
            for name in FLOOR_PROJECTIONS[layer]:
                bias = not (layer == "GATConv")  # GATConv's lin has no bias, the layer has one
                setattr(self, name, torch.nn.Linear(in_channels, width, bias=bias))
            self.bias = torch.nn.Parameter(torch.zeros(width)) if layer == "GATConv" else None

        def forward(self, x, edge_index):
            out = sum(getattr(self, name)(x) for name in FLOOR_PROJECTIONS[layer])
            return out if self.bias is None else out + self.bias

    return Projections


def make_net(conv_cls, in_channels: int, num_classes: int, num_layers: int,
             graph_level: bool, dropout: float = 0.0):
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import global_mean_pool

    class Net(torch.nn.Module):
        """``num_layers`` attention layers (H x C = 8 x 8, concatenated), ELU
        between them, optional global mean pooling, then a linear head; with
        ``dropout``, each layer's input and its attention weights are dropped."""

        def __init__(self):
            super().__init__()
            width = HEADS * HIDDEN
            self.convs = torch.nn.ModuleList(
                conv_cls(in_channels if i == 0 else width, HIDDEN, heads=HEADS, dropout=dropout)
                for i in range(num_layers))
            self.head = torch.nn.Linear(width, num_classes)

        def forward(self, x, edge_index, batch=None, num_graphs=None):
            for conv in self.convs:
                x = F.dropout(x, p=dropout, training=self.training)
                x = F.elu(conv(x, edge_index))
            if graph_level:  # the graph count given: no data-dependent size to compile
                x = global_mean_pool(x, batch, num_graphs)
            return self.head(x)

    return Net()


# ============================================================================ data
@dataclass
class Batch:
    x: object
    edge_index: object
    y: object
    batch: object = None
    loss_rows: Optional[int] = None  # leading rows that carry the loss (seed nodes)
    num_graphs: Optional[int] = None  # graphs in a batch of graphs


@dataclass
class Workload:
    name: str
    in_channels: int
    num_layers: int
    graph_level: bool
    batches: Callable[[int], Iterator[Batch]]  # n -> n batches, each a new graph if it says so
    dropout: float = 0.0  # input and attention dropout of every layer


def power_law_data(num_nodes: int, num_edges: int, features: int, seed: int):
    import torch
    from torch_geometric.data import Data

    edge_index, _ = common.make_graph(num_nodes, num_edges, seed, 0.7)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(num_nodes, features, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (num_nodes,), generator=gen)
    return Data(x=x, edge_index=edge_index, y=y)


def neighbor_workload(quick: bool) -> Workload:
    import torch
    from torch_geometric.loader import NeighborLoader

    nodes = 10_000 if quick else 100_000
    data = power_law_data(nodes, 10 * nodes, 128, seed=3)
    loader = NeighborLoader(data, num_neighbors=[10, 10], batch_size=128 if quick else 1024,
                            shuffle=True, generator=torch.Generator().manual_seed(0))

    def batches(n: int) -> Iterator[Batch]:
        produced = 0
        while produced < n:
            for b in loader:
                yield Batch(b.x, b.edge_index, b.y, loss_rows=b.batch_size)
                produced += 1
                if produced == n:
                    return

    return Workload("neighbor", 128, 2, False, batches)


def dropout_workload(name: str, quick: bool) -> Workload:
    """``cora-dropout`` / ``neighbor-dropout``: the base workload with the recipe's
    input and attention dropout (Cora with row-normalised features, as
    ``examples/gat.py`` loads it)."""
    import dataclasses

    base = name.removesuffix("-dropout")
    workload = neighbor_workload(quick) if base == "neighbor" else cora_workload(
        quick, normalize=True)
    return dataclasses.replace(workload, name=name, dropout=RECIPE_DROPOUT)


def molecule(num_nodes: int, gen, features: int):
    """A chain ``0-1-...-(n-1)`` with ring closures every 5-7 atoms, both directions."""
    import torch
    from torch_geometric.data import Data

    src = list(range(num_nodes - 1))
    dst = list(range(1, num_nodes))
    start = 0
    while start + 6 < num_nodes:
        size = int(torch.randint(5, 8, (1,), generator=gen))
        end = min(start + size - 1, num_nodes - 1)
        src.append(start)
        dst.append(end)
        start = end + 1
    ei = torch.tensor([src + dst, dst + src])
    x = torch.randn(num_nodes, features, generator=gen)
    return Data(x=x, edge_index=ei, y=torch.randint(0, 2, (1,), generator=gen))


def molecules_workload(quick: bool) -> Workload:
    import torch
    from torch_geometric.data import Batch as PygBatch

    gen = torch.Generator().manual_seed(5)
    per_batch = 16 if quick else 128
    pool = [molecule(int(torch.randint(12, 41, (1,), generator=gen)), gen, 16)
            for _ in range(4 * per_batch)]

    def batches(n: int) -> Iterator[Batch]:
        for i in range(n):
            first = (i * per_batch) % len(pool)
            graphs = (pool + pool)[first:first + per_batch]
            b = PygBatch.from_data_list(graphs)  # a new Batch every step
            yield Batch(b.x, b.edge_index, b.y, batch=b.batch, num_graphs=b.num_graphs)

    return Workload("molecules", 16, 3, True, batches)


def cora_workload(quick: bool, normalize: bool = False) -> Workload:
    import torch_geometric.transforms as T

    from pyg_attn.datasets import load_dataset

    data = load_dataset("Cora", transform=T.NormalizeFeatures() if normalize else None)[0]

    def batches(n: int) -> Iterator[Batch]:
        for _ in range(n):
            yield Batch(data.x, data.edge_index, data.y)

    return Workload("cora", data.num_features, 2, False, batches)


def full_graph_workload(name: str, quick: bool) -> Workload:
    size, variant = name.split("-")
    nodes, edges, features = FULL_GRAPHS[size]
    if quick:
        nodes, edges = nodes // 50, edges // 50
    data = power_law_data(nodes, edges, features, seed=0)

    def batches(n: int) -> Iterator[Batch]:
        for _ in range(n):
            ei = data.edge_index.clone() if variant == "uncached" else data.edge_index
            yield Batch(data.x, ei, data.y)

    return Workload(name, features, 2, False, batches)


def build_workload(name: str, quick: bool) -> Workload:
    if name == "neighbor":
        return neighbor_workload(quick)
    if name == "molecules":
        return molecules_workload(quick)
    if name == "cora":
        return cora_workload(quick)
    if name.endswith("-dropout"):
        return dropout_workload(name, quick)
    return full_graph_workload(name, quick)


def neighbor_sampling_available() -> bool:
    try:
        import torch_geometric.typing as t
    except ImportError:
        return False
    return bool(getattr(t, "WITH_PYG_LIB", False) or getattr(t, "WITH_TORCH_SPARSE", False))


# ============================================================================ steps
def build_models(layer: str, workload: Workload, seed: int = 0, floor: bool = False,
                 compiled: bool = False):
    """``{"pyg": model, "pyg_attn": model}`` with the same weights, plus the
    ``"floor"`` model (:func:`floor_conv`) and our model under ``torch.compile``
    (``"compiled"``, sharing the eager model's weights' values) when asked for."""
    import torch
    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    classes = {"pyg": getattr(pyg_nn, layer), "pyg_attn": getattr(our_nn, layer)}
    if floor:
        classes["floor"] = floor_conv(layer)
    if compiled:
        classes["compiled"] = getattr(our_nn, layer)
    models = {}
    for provider, conv_cls in classes.items():
        torch.manual_seed(seed)
        models[provider] = make_net(conv_cls, workload.in_channels, NUM_CLASSES
                                    if not workload.graph_level else 2, workload.num_layers,
                                    workload.graph_level, workload.dropout)
    models["pyg_attn"].load_state_dict(models["pyg"].state_dict())
    if compiled:
        models["compiled"].load_state_dict(models["pyg"].state_dict())
        models["compiled"] = torch.compile(models["compiled"], dynamic=True)
    return models


def make_step(model):
    """One training step of ``model`` on a :class:`Batch`: returns the loss."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(b: Batch) -> float:
        opt.zero_grad(set_to_none=True)
        out = model(b.x, b.edge_index, b.batch, b.num_graphs)
        if b.loss_rows is not None:
            out, y = out[:b.loss_rows], b.y[:b.loss_rows]
        else:
            y = b.y
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        return float(loss)

    return step


def check(models: dict, b: Batch) -> float:
    """Max abs difference of the eval-mode outputs on ``b`` of our models (eager
    and compiled) from PyG's."""
    import torch

    compared = [p for p in models if p != "floor"]
    with torch.no_grad():
        outs = {p: models[p].eval()(b.x, b.edge_index, b.batch, b.num_graphs)
                for p in compared}
    for m in models.values():
        m.train()
    return max(float((outs[p] - outs["pyg"]).abs().max()) for p in compared if p != "pyg")


def time_steps(models: dict, workload: Workload, warmup: int, steps: int) -> dict:
    """Alternating steps (order swapped every step); per-provider step times in ms."""
    steppers = {p: make_step(m) for p, m in models.items()}
    times = {p: [] for p in models}
    order = list(models)
    for i, b in enumerate(workload.batches(warmup + steps)):
        for provider in (order if i % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            steppers[provider](b)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[provider].append(1e3 * dt)
    return times


def tiny_batch(workload: Workload) -> Batch:
    """A 16-node batch shaped like ``workload``'s, to initialise libraries and
    thread pools before the memory baseline is taken."""
    import torch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, workload.in_channels, generator=gen)
    edge_index = torch.randint(0, 16, (2, 48), generator=gen)
    if workload.graph_level:
        return Batch(x, edge_index, torch.zeros(1, dtype=torch.long),
                     batch=torch.zeros(16, dtype=torch.long), num_graphs=1)
    return Batch(x, edge_index, torch.randint(0, NUM_CLASSES, (16,), generator=gen))


def peak_memory_worker(spec: dict) -> dict:
    """Peak extra resident memory of the first 3 steps on the workload's batches
    (this process; libraries initialised on a tiny batch first). Measured from the
    first real step on, so one-time allocations a provider keeps (a cached CSR, the
    allocator's pools) count, as they do in a user's process.  The batches are made
    before the measurement and each is dropped after its step, as in the timed loop
    and a training loop (what a provider keeps per graph lives as long as its batch)."""
    import torch

    torch.set_num_threads(spec["threads"])
    workload = build_workload(spec["workload"], spec["quick"])
    model = build_models(spec["layer"], workload)[spec["provider"]]
    step = make_step(model)
    batches = list(workload.batches(3))
    step(tiny_batch(workload))
    meter = common.PeakMemory(torch.device("cpu"))
    meter.start()
    while batches:
        step(batches.pop(0))
    return {"peak_mb": meter.stop_mb(), "method": meter.method}


def peak_memory(spec: dict) -> Optional[float]:
    proc = subprocess.run([sys.executable, __file__, "--memory-worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        print(f"memory worker failed for {spec}:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mb"]


# ============================================================================ report
def environment(threads: int) -> dict:
    import torch_geometric

    import pyg_attn

    cpu = common.cpu_name()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                            "pyg_attn", "benchmarks/*.py"],  # result files do not count
                           capture_output=True, text=True, cwd=HERE.parent).stdout.strip()
    return {"cpu": cpu, "threads": threads, "python": platform.python_version(),
            **common.versions(), "torch_geometric": torch_geometric.__version__,
            "pyg_attn": pyg_attn.__version__,
            "commit": commit + (" (with uncommitted changes)" if dirty else "")}


def markdown(rows: list, env: dict, command: str) -> str:
    lines = ["# Training steps on real workloads: pyg_attn vs PyG (CPU)", "",
             *common.environment_rows(env, command), "",
             "ms = median step time (forward, loss, backward, Adam step); peak = extra resident "
             "MiB of a step; speed-up = PyG ms / ours ms; memory = ours peak / PyG peak; "
             "floor = the same model with each attention layer replaced by its linear "
             "projections alone; compiled = ours under torch.compile(dynamic=True) / ours "
             "eager.", "",
             "| workload | layer | ours ms | PyG ms | speed-up | ours / floor | PyG / floor | "
             "compiled / eager | ours peak MiB | PyG peak MiB | memory | max abs err | steps |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        def f(v, d=2):
            return "-" if v is None else f"{v:.{d}f}"
        lines.append(f"| {r['workload']} | {r['layer']} | {f(r['ours_ms'])} | {f(r['pyg_ms'])} | "
                     f"{f(r['speedup'])}x | {f(r['ours_floor'])} | {f(r['pyg_floor'])} | "
                     f"{f(r['compiled_eager'])} | {f(r['ours_peak_mb'], 1)} | {f(r['pyg_peak_mb'], 1)} | "
                     f"{f(r['memory_ratio'])} | {r['max_abs_err']:.1e} | {r['steps']} |")
    return "\n".join(lines) + "\n"


def run(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    env = environment(args.threads)
    print(json.dumps(env), flush=True)
    rows, failed = [], False
    for name in args.workloads:
        if name == "neighbor" and not neighbor_sampling_available():
            print("neighbor: skipped (NeighborLoader needs torch_sparse or pyg-lib)", flush=True)
            continue
        workload = build_workload(name, args.quick)
        for layer in args.layers:
            models = build_models(layer, workload, floor=True, compiled=args.compile)
            err = check(models, next(workload.batches(1)))
            ok = err <= CHECK_TOL
            failed |= not ok
            times = time_steps(models, workload, args.warmup, args.steps)
            ours, pyg, floor = (statistics.median(times[p]) for p in ("pyg_attn", "pyg", "floor"))
            compiled = statistics.median(times["compiled"]) if args.compile else None
            row = {"workload": name, "layer": layer, "ours_ms": ours, "pyg_ms": pyg,
                   "speedup": pyg / ours, "floor_ms": floor, "ours_floor": ours / floor,
                   "pyg_floor": pyg / floor, "compiled_ms": compiled,
                   "compiled_eager": None if compiled is None else compiled / ours,
                   "max_abs_err": err, "check_ok": ok,
                   "steps": args.steps, "ours_peak_mb": None, "pyg_peak_mb": None,
                   "memory_ratio": None}
            if args.memory:
                for provider, key in (("pyg_attn", "ours_peak_mb"), ("pyg", "pyg_peak_mb")):
                    row[key] = peak_memory({"workload": name, "layer": layer,
                                            "provider": provider, "threads": args.threads,
                                            "quick": args.quick})
                if row["ours_peak_mb"] is not None and row["pyg_peak_mb"]:
                    row["memory_ratio"] = row["ours_peak_mb"] / row["pyg_peak_mb"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = "python benchmarks/bench_workloads.py " + " ".join(args.argv)
    common.publish(markdown(rows, env, command.strip()), args.out)
    if args.out:
        out = Path(args.out)
        with open(out.with_suffix(".csv"), "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) + list(env) if rows else [])
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, **env})
    for r in rows:
        print(f"check {r['workload']} {r['layer']}: {'ok' if r['check_ok'] else 'FAILED'} "
              f"(max abs err {r['max_abs_err']:.1e})")
    return 1 if failed or not rows else 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--steps", type=int, default=30, help="timed steps per provider (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak-memory runs (each a fresh interpreter)")
    p.add_argument("--compile", action="store_true",
                   help="also time our model under torch.compile(dynamic=True)")
    p.add_argument("--quick", action="store_true",
                   help="small graphs, 3 timed steps: a smoke test")
    p.add_argument("--out", metavar="PATH",
                   help="write PATH.md and PATH.csv (e.g. benchmarks/results/workloads-cpu)")
    p.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    common.resolve_vml_dispatch()  # before PyG's first multi-threaded exp (see there)
    if args.memory_worker:
        print(json.dumps(peak_memory_worker(json.loads(args.memory_worker))))
        return 0
    if args.quick:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
    args.argv = argv
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
