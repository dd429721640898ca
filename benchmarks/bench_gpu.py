#!/usr/bin/env python
"""GPU benchmark: the Triton kernels against PyG on CUDA, in one process.

Everything runs in one process on one GPU (CUDA events for time, the caching
allocator's ``max_memory_allocated`` for memory), so that one command measures all
of it in a few minutes:

* **ops**: ``graph_attention`` (dot score) and ``gat_attention`` (GAT score) with
  the Triton backend on a graph prepared once, against PyG's attention as
  ``TransformerConv``/``GATConv`` compute it (gather per edge, ``softmax``,
  scatter-sum; ``bench_ops.pyg_attention``), forward and forward+backward;
* **layers**: ``GATConv``, ``GATv2Conv``, ``TransformerConv`` from ``pyg_attn.nn``
  and ``torch_geometric.nn`` with the same weights, called on a plain
  ``edge_index`` (our layers prepare it on the first call and reuse it), one
  training step (forward, backward) and a no-grad forward;
* **roofline**: the ops' forward time against the compulsory bytes (every node
  input read once, the CSR read once, the output and row statistics written
  once) and the device-to-device copy bandwidth measured in the same run.

Graphs are power-law in-degree graphs (``make_graph``: the distribution of
``common.make_graph``, drawn on the GPU so that the products-sized graph
takes a second, not minutes) of 50k / arxiv / products size.  Peak memory is
the extra memory of the timed region (inputs and the prepared graph excluded).
A provider that runs out of memory is reported as ``OOM``.

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu-h200.md
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --device cpu --sizes tiny   # smoke test
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_ops  # noqa: E402  (also puts the repository root on sys.path)
import torch  # noqa: E402

SIZES = {  # name: (nodes, edges, input features of the layers)
    "tiny": (300, 2_000, 16),
    "50k": (50_000, 500_000, 64),
    "arxiv": (169_343, 1_166_243, 128),
    "products": (2_449_029, 61_859_140, 100),
}
LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")
HEADS = 8


def make_graph(num_nodes: int, num_edges: int, seed: int, exponent: float,
               device: torch.device) -> torch.Tensor:
    """``[2, E]`` edges with in-degrees ~ ``rank ** -exponent`` (ranks spread over
    the ids by a random permutation), uniform sources, sorted by (source,
    destination) like a coalesced PyG ``edge_index``; drawn on ``device``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    weight = torch.arange(1, num_nodes + 1, device=device, dtype=torch.float64) ** (-exponent)
    cdf = torch.cumsum(weight, 0)
    cdf /= cdf[-1].clone()
    u = torch.rand(num_edges, generator=gen, device=device, dtype=torch.float64)
    rank = torch.searchsorted(cdf, u, right=True).clamp_max(num_nodes - 1)
    dst = torch.randperm(num_nodes, generator=gen, device=device)[rank]
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen, device=device)
    order = torch.argsort(src * num_nodes + dst)
    return torch.stack([src[order], dst[order]])


class Timer:
    """Median milliseconds of ``fn`` after a warm-up, with CUDA events on a GPU."""

    def __init__(self, device: torch.device, budget_s: float, max_reps: int):
        self.device, self.budget_s, self.max_reps = device, budget_s, max_reps

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def one(self, fn) -> float:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return 1e3 * (time.perf_counter() - t0)

    def median_ms(self, fn) -> tuple[float, int]:
        first = self.one(fn)  # compiles kernels, fills caches
        second = self.one(fn)
        reps = int(max(3, min(self.max_reps, self.budget_s * 1e3 / max(second, 1e-3))))
        times = [self.one(fn) for _ in range(reps)]
        del first
        return statistics.median(times), reps

    def peak_mb(self, fn) -> float:
        if self.device.type != "cuda":
            return float("nan")
        self.sync()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        fn()
        self.sync()
        return (torch.cuda.max_memory_allocated(self.device) - before) / 2**20


def guarded(measure):
    """Runs ``measure()``; an out-of-memory error becomes ``None`` (reported OOM)."""
    try:
        return measure()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None


def step(module_call, params):
    """One training step's compute: forward, ``sum().backward()``, gradients dropped."""
    def run():
        for p in params:
            p.grad = None
        module_call().sum().backward()
    return run


def measure(timer: Timer, fn) -> dict | None:
    def go():
        peak = timer.peak_mb(fn)
        ms, reps = timer.median_ms(fn)
        return {"ms": ms, "peak_mb": peak, "reps": reps}
    return guarded(go)


# ============================================================================ ops
def op_inputs(score: str, n: int, channels: int, device, seed: int) -> dict:
    gen = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device).requires_grad_()

    if score == "dot":
        return {"q": randn(n, HEADS, channels), "k": randn(n, HEADS, channels),
                "v": randn(n, HEADS, channels)}
    if score == "gatv2":  # GATv2 reads the projected features as its values
        return {"x_src": randn(n, HEADS, channels), "x_dst": randn(n, HEADS, channels),
                "att": randn(HEADS, channels)}
    return {"a_src": randn(n, HEADS), "a_dst": randn(n, HEADS), "v": randn(n, HEADS, channels)}


def ours_op(score: str, t: dict, graph):
    """The ``score`` op (``dot``, ``gat`` or ``gatv2``) on :func:`op_inputs`'s
    tensors with the Triton backend."""
    from pyg_attn.ops import gat_attention, gatv2_attention, graph_attention

    call = {"dot": graph_attention, "gat": gat_attention, "gatv2": gatv2_attention}[score]
    return call(*t.values(), graph, backend="triton")


def compulsory_forward_bytes(score: str, n: int, e: int, channels: int, elem: int = 4) -> int:
    """Bytes a forward must move at least: node inputs read once, rowptr (int64)
    and col/perm (int32) read once, out and the row statistics written once."""
    node = n * HEADS * channels * elem
    inputs = 3 * node if score == "dot" else node + 2 * n * HEADS * elem
    return inputs + 8 * (n + 1) + 8 * e + node + 2 * n * HEADS * elem


def bench_ops_size(size: str, timer: Timer, device, channels: int, rows: list, log) -> None:
    from pyg_attn.ops import prepare

    n, e, _ = SIZES[size]
    edge_index = make_graph(n, e, 0, 0.7, device)
    t0 = time.perf_counter()
    graph = prepare(edge_index, num_nodes=n)
    timer.sync()
    log(f"[{size}] prepare: {1e3 * (time.perf_counter() - t0):.1f} ms")
    src, dst = edge_index[0], edge_index[1]
    scale = 1.0 / math.sqrt(channels)
    for score in ("dot", "gat"):
        t = op_inputs(score, n, channels, device, 1)
        grad_out = torch.randn(n, HEADS, channels, device=device)
        with torch.no_grad():
            ours = ours_op(score, t, graph)
            ref = guarded(lambda: bench_ops.pyg_attention(score, t, src, dst, n, scale))
            err = None if ref is None else float((ours - ref).abs().max())
        del ours, ref
        leaves = list(t.values())

        def backward_of(call):
            def run():
                for x in leaves:
                    x.grad = None
                call().backward(grad_out)
            return run

        calls = {"pyg_attn": lambda: ours_op(score, t, graph),
                 "pyg": lambda: bench_ops.pyg_attention(score, t, src, dst, n, scale)}
        for provider, call in calls.items():
            for mode in ("forward", "full"):
                if mode == "forward":
                    def fn(call=call):
                        with torch.no_grad():
                            call()
                else:
                    fn = backward_of(call)
                r = measure(timer, fn)
                row = {"table": "ops", "size": size, "what": score, "C": channels,
                       "provider": provider, "mode": mode, "max_abs_err": err,
                       **(r or {"ms": None, "peak_mb": None})}
                if r and mode == "forward" and provider == "pyg_attn":
                    nbytes = compulsory_forward_bytes(score, n, e, channels)
                    row["bytes"] = nbytes
                    row["gb_s"] = nbytes / (r["ms"] * 1e-3) / 1e9
                rows.append(row)
                log(json.dumps(row))
        del t, grad_out, leaves
    del graph, edge_index, src, dst
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ============================================================================ layers
def bench_layers_size(size: str, timer: Timer, device, channels: int, rows: list, log,
                      layers=LAYERS) -> None:
    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    n, e, feats = SIZES[size]
    edge_index = make_graph(n, e, 0, 0.7, device)
    x = torch.randn(n, feats, device=device, generator=torch.Generator(device).manual_seed(2))
    for name in layers:
        torch.manual_seed(0)
        theirs = getattr(pyg_nn, name)(feats, channels, heads=HEADS).to(device)
        ours = getattr(our_nn, name)(feats, channels, heads=HEADS).to(device)
        ours.load_state_dict(theirs.state_dict())
        with torch.no_grad():
            out = ours(x, edge_index)
            ref = guarded(lambda: theirs(x, edge_index))
            err = None if ref is None else float((out - ref).abs().max())
        del out, ref
        for provider, module in (("pyg_attn", ours), ("pyg", theirs)):
            params = list(module.parameters())
            for mode in ("forward", "full"):
                if mode == "forward":
                    def fn(module=module):
                        with torch.no_grad():
                            module(x, edge_index)
                else:
                    fn = step(lambda module=module: module(x, edge_index), params)
                r = measure(timer, fn)
                row = {"table": "layers", "size": size, "what": name, "C": channels,
                       "provider": provider, "mode": mode, "max_abs_err": err,
                       **(r or {"ms": None, "peak_mb": None})}
                rows.append(row)
                log(json.dumps(row))
            for p in params:
                p.grad = None
        del theirs, ours
        if device.type == "cuda":
            torch.cuda.empty_cache()
    del x, edge_index
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ============================================================================ report
def copy_bandwidth_gb_s(device, timer: Timer) -> float | None:
    """Device-to-device copy of 2 GiB: (bytes read + bytes written) / time."""
    if device.type != "cuda":
        return None
    a = torch.empty(2**29, device=device)
    b = torch.empty_like(a)
    ms, _ = timer.median_ms(lambda: b.copy_(a))
    return 2 * a.numel() * 4 / (ms * 1e-3) / 1e9


def environment(device) -> dict:
    import torch_geometric
    import triton

    import pyg_attn

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=HERE).stdout.strip() or "unknown"
    except OSError:
        commit = "unknown"
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
        "torch_geometric": torch_geometric.__version__, "pyg_attn": pyg_attn.__version__,
        "python": platform.python_version(), "commit": commit,
    }


def fmt(v, digits=2) -> str:
    if v is None:
        return "OOM"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.{digits}f}"


def markdown(rows: list, env: dict, copy_bw, command: str) -> str:
    lines = [f"# GPU benchmark: {env['device']}", "",
             "| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += [f"| command | `{command}` |",
              f"| device-to-device copy bandwidth | {fmt(copy_bw or math.nan, 0)} GB/s |", ""]
    for table in ("ops", "layers"):
        sel = [r for r in rows if r["table"] == table]
        if not sel:
            continue
        lines += [f"## {table} (H={HEADS}; ms = median per call; peak = extra MiB of the call)",
                  "", "| size | what | C | mode | ours ms | PyG ms | speed-up | ours peak MiB | "
                  "PyG peak MiB | memory ratio | max abs err |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        keys = sorted({(r["size"], r["what"], r["C"], r["mode"]) for r in sel},
                      key=lambda k: (list(SIZES).index(k[0]), k[1], k[2], k[3]))
        for key in keys:
            by = {r["provider"]: r for r in sel if (r["size"], r["what"], r["C"], r["mode"]) == key}
            o, p = by.get("pyg_attn", {}), by.get("pyg", {})
            speed = (p["ms"] / o["ms"]) if o.get("ms") and p.get("ms") else None
            mem = (o["peak_mb"] / p["peak_mb"]) if o.get("peak_mb") and p.get("peak_mb") else None
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {fmt(o.get('ms'), 3)} | "
                         f"{fmt(p.get('ms'), 3)} | {fmt(speed)}x | {fmt(o.get('peak_mb'), 0)} | "
                         f"{fmt(p.get('peak_mb'), 0)} | {fmt(mem)} | "
                         f"{fmt(o.get('max_abs_err'), 6) if o.get('max_abs_err') is not None else '-'} |")
        lines.append("")
    roof = [r for r in rows if r.get("gb_s")]
    if roof:
        lines += ["## Forward against the memory roofline", "",
                  "| size | score | C | ms | compulsory MB | achieved GB/s | % of copy bandwidth |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in roof:
            pct = 100 * r["gb_s"] / copy_bw if copy_bw else math.nan
            lines.append(f"| {r['size']} | {r['what']} | {r['C']} | {r['ms']:.3f} | "
                         f"{r['bytes'] / 1e6:.1f} | {r['gb_s']:.0f} | {fmt(pct, 1)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["50k", "arxiv", "products"])
    p.add_argument("--parts", nargs="+", choices=("ops", "layers"), default=["ops", "layers"])
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--op-channels", type=int, default=16, help="C of the ops (default 16)")
    p.add_argument("--layer-channels", type=int, default=8, help="C of the layers (default 8)")
    p.add_argument("--budget", type=float, default=0.3, help="timed seconds per cell")
    p.add_argument("--max-reps", type=int, default=50)
    p.add_argument("--out", metavar="MD", help="write the Markdown table here")
    p.add_argument("--json", metavar="PATH", help="write the rows as JSON here")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    timer = Timer(device, args.budget, args.max_reps)
    rows: list = []
    failed = False

    def log(msg: str) -> None:
        print(msg, flush=True)

    env = environment(device)
    log(json.dumps(env))
    copy_bw = copy_bandwidth_gb_s(device, timer)
    log(f"copy bandwidth: {copy_bw} GB/s")
    for size in args.sizes:
        for part in args.parts:
            try:
                if part == "ops":
                    bench_ops_size(size, timer, device, args.op_channels, rows, log)
                else:
                    bench_layers_size(size, timer, device, args.layer_channels, rows, log,
                                      args.layers)
            except Exception:  # noqa: BLE001 - report it and go on with the next part
                failed = True
                log(f"[{size}] {part} failed:\n{traceback.format_exc()}")
        if args.json:
            Path(args.json).write_text(json.dumps({"env": env, "copy_gb_s": copy_bw,
                                                   "rows": rows}, indent=1))
    command = "python benchmarks/bench_gpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(rows, env, copy_bw, command.strip())
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
