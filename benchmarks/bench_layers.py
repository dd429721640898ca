#!/usr/bin/env python
"""Benchmark pyg_attn's drop-in layers against their torch_geometric twins.

Layers: ``GATConv``, ``GATv2Conv``, ``TransformerConv`` from ``pyg_attn.nn``
(provider ``pyg_attn``) and ``torch_geometric.nn`` (provider ``pyg``; provider
``pyg-sparse`` is PyG's fastest input form, the same layer fed a transposed
``torch_sparse.SparseTensor`` built outside the timed region and counted in its
peak memory, so its softmax takes the CSR ``ptr`` path), built with
the same constructor arguments (``in_channels=F, out_channels=C, heads=H``,
``dropout=0``, everything else default) and the same weights
(``ours.load_state_dict(theirs.state_dict())``), called as ``layer(x, edge_index)``
on a plain ``[2, E]`` edge_index (so any per-graph caching a layer does happens in
the warm-up and counts towards its peak memory).

Modes: ``forward`` (``torch.no_grad()``), ``full`` = one training step,
``layer(x, edge_index).sum().backward()`` including the linear projections (the
parameter gradients are computed, ``x`` needs none), and ``backward`` (only the
``.backward()`` after an untimed forward).

Graphs (``common.make_graph``: power-law in-degrees, sources uniform):
cora-sized 2,708 / 10,556 with the real F=1433 input features, 50k nodes / 500k
edges with F=64, arxiv-sized 169,343 / 1,166,243 with F=128.

The measurement machinery (fork server / exec worker per measurement, peak RSS
via /proc/self/clear_refs, timing loop, CSV) is ``common.py``'s, as for ``bench_ops.py``.
Once per (size, layer, C) the ``pyg_attn`` output is checked against PyG's in
eval mode (atol 1e-4).  Run ``python benchmarks/bench_layers.py --help``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402  (also puts the repository root on sys.path)
from common import SIZES  # noqa: E402

PROVIDERS = ("pyg_attn", "pyg", "pyg-sparse")
LAYERS = ("GATConv", "GATv2Conv", "TransformerConv")
MODES = ("forward", "backward", "full")
FEATURES = {"cora": 1433, "50k": 64, "arxiv": 128}  # input feature width F per size
CHECK_TOL = 1e-4


# ============================================================================ worker
def build_layers(layer: str, provider: str, in_channels: int, heads: int, channels: int,
                 seed: int, with_twin: bool):
    """(layer to time, PyG twin for the output check or None); both with PyG's weights."""
    import torch
    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    torch.manual_seed(seed)
    theirs = getattr(pyg_nn, layer)(in_channels, channels, heads=heads, dropout=0.0)
    if provider != "pyg_attn":
        return theirs, None
    ours = getattr(our_nn, layer)(in_channels, channels, heads=heads, dropout=0.0)
    ours.load_state_dict(theirs.state_dict())
    return ours, (theirs if with_twin else None)


def layer_input(provider: str, edge_index, num_nodes: int):
    """``(graph input, MB it holds beyond edge_index)``: the ``[2, E]`` tensor, or
    for ``pyg-sparse`` the transposed ``SparseTensor`` (row = destination) PyG's
    layers take as their fastest input."""
    if provider != "pyg-sparse":
        return edge_index, None
    from torch_sparse import SparseTensor

    adj_t = SparseTensor(row=edge_index[1], col=edge_index[0],
                         sparse_sizes=(num_nodes, num_nodes))
    storage = adj_t.storage
    held = [storage.row(), storage.rowptr(), storage.col()]
    return adj_t, sum(t.numel() * t.element_size() for t in held) / 2**20


def make_call(module, x, edge_index, mode):
    if mode == "forward":
        return lambda: module(x, edge_index)
    return lambda: module(x, edge_index).sum()


def measure_layer(spec: dict) -> dict:
    """One (size, layer, C, mode, provider) measurement; runs in its own process."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    provider, layer, mode = spec["provider"], spec["layer"], spec["mode"]
    heads, channels, feats = spec["heads"], spec["channels"], spec["features"]
    num_nodes, num_edges = SIZES[spec["size"]]
    sync = common.device_sync(device)

    module, twin = build_layers(layer, provider, feats, heads, channels, spec["seed"],
                                bool(spec.get("check")))
    module = module.to(device).train(mode != "forward")
    params = dict(module.named_parameters())
    grad_out = torch.ones((), device=device)

    # Lazy one-time initialisation on a tiny graph (not timed, not in the peak).
    tiny_ei, _ = common.make_graph(16, 64, 0, spec["zipf"])
    tiny_ei = tiny_ei.to(device)
    tiny_x = torch.randn(16, feats, generator=torch.Generator().manual_seed(0)).to(device)
    common.time_loop(make_call(module, tiny_x, layer_input(provider, tiny_ei, 16)[0], mode), mode,
               params, grad_out, 1, 1, 1, 0.0, sync)
    del tiny_ei, tiny_x

    edge_index, graph_stats = common.make_graph(num_nodes, num_edges, spec["seed"], spec["zipf"])
    edge_index = edge_index.to(device)
    x = torch.randn(num_nodes, feats,
                    generator=torch.Generator().manual_seed(spec["seed"] + 1)).to(device)
    graph_input, prepare_mb = layer_input(provider, edge_index, num_nodes)
    fn = make_call(module, x, graph_input, mode)

    result = {
        **spec, "num_nodes": num_nodes, "num_edges": num_edges, "prepare_mb": prepare_mb,
        **common.with_prepared(
            common.timed_region(fn, mode, params, grad_out, spec, device, sync), prepare_mb),
        "graph": graph_stats,
        "backend": common.provider_backend(provider, device),
        "versions": common.versions(),
    }
    if twin is not None:
        module.eval()
        twin = twin.to(device).eval()
        with torch.no_grad():
            ours, theirs = module(x, edge_index), twin(x, edge_index)
            err = (ours - theirs).abs().max().item() if ours.numel() else 0.0
        result["check_max_abs_err"] = err
        result["check_ok"] = bool(err <= CHECK_TOL)
    return result


def _preload() -> None:
    common.preload()
    import torch_geometric.nn  # noqa: F401

    import pyg_attn.nn  # noqa: F401


# ============================================================================ driver
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark pyg_attn.nn layers against their torch_geometric.nn twins.")
    p.add_argument("--layers", nargs="+", choices=LAYERS, default=list(LAYERS))
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES),
                   help="graph sizes (default: all three; F = "
                        + ", ".join(f"{s}: {f}" for s, f in FEATURES.items()) + ")")
    p.add_argument("--modes", nargs="+", choices=MODES, default=["forward", "full"],
                   help="default: forward full")
    common.add_common_args(p)
    args = p.parse_args(argv)
    common.resolve_common_args(p, args)
    return args


def build_specs(args):
    specs = []
    for size in args.sizes:
        for layer in args.layers:
            for channels in args.channels:
                for k, mode in enumerate(args.modes):
                    for provider in available_providers():
                        specs.append(common.spec_of(
                            args, size=size, layer=layer, channels=channels, mode=mode,
                            provider=provider, features=FEATURES[size],
                            check=provider == "pyg_attn" and k == 0))
    return specs


def available_providers() -> tuple:
    """:data:`PROVIDERS`, without ``pyg-sparse`` when ``torch_sparse`` is missing."""
    try:
        import torch_sparse  # noqa: F401
    except ImportError:
        print("note: torch_sparse is not installed; the pyg-sparse provider is skipped")
        return tuple(p for p in PROVIDERS if p != "pyg-sparse")
    return PROVIDERS


def summarize(results):
    """Adds the ratios to ``pyg`` and ``pyg-sparse`` and sorts the rows."""
    common.add_ratios(results, "layer", "pyg-sparse")
    results.sort(key=lambda r: (list(SIZES).index(r["size"]), LAYERS.index(r["layer"]),
                                r["channels"], MODES.index(r["mode"]),
                                PROVIDERS.index(r["provider"])))
    return results


def print_report(args, results, wall_s):
    ok = [r for r in results if "error" not in r]
    v = ok[0].get("versions", {}) if ok else {}
    print("=" * 100)
    print("pyg_attn layer benchmark (pyg_attn.nn vs torch_geometric.nn, same weights)")
    print(f"  torch {v.get('torch', '?')}, torch_geometric {v.get('torch_geometric', '?')}, "
          f"pyg_attn at git {common.git_state()}")
    backends = sorted({r["backend"] for r in ok if r["provider"] == "pyg_attn"})
    if backends:
        print(f"  pyg_attn backend resolved to: {', '.join(backends)}")
    print(f"  device {args.device}, torch threads {args.threads}, heads H={args.heads}, "
          f"float32, seed {args.seed}; {os.cpu_count()} CPUs, load average {common.load_average()}")
    print(f"  timing: median of up to {args.repeats} repeats (>= {args.min_repeats}, stop after "
          f"{args.time_budget:g} s timed) after >= {args.warmup} warm-up runs and >= "
          f"{args.warmup_seconds:g} s; full = forward + "
          ".sum().backward() incl. linear projections; forward under no_grad")
    print("  peak MB: extra peak RSS over inputs + module, one process per row, warm-up "
          f"included ({', '.join(sorted({r['mem_method'] for r in ok})) or '?'})")
    for size in args.sizes:
        rows = [r for r in ok if r["size"] == size]
        if rows:
            g = rows[0]["graph"]
            print(f"  graph {size}: N={rows[0]['num_nodes']:,} E={rows[0]['num_edges']:,} "
                  f"F={FEATURES[size]}, in-degree max {g['max_in_degree']:,} median "
                  f"{g['median_in_degree']:g}, {g['zero_in_degree_pct']:.1f}% no in-edge")
    print()
    common.print_table(results, "layer", 15)
    checks = [r for r in ok if "check_ok" in r]
    for r in checks:
        if not r["check_ok"]:
            print(f"WARNING: pyg_attn {r['layer']} output differs from PyG's at size={r['size']} "
                  f"C={r['channels']}: max abs err {r['check_max_abs_err']:.3g} > {CHECK_TOL:g}")
    if checks:
        print(f"output check vs pyg (eval forward, atol {CHECK_TOL:g}): "
              f"{sum(r['check_ok'] for r in checks)}/{len(checks)} ok, worst max abs err "
              f"{max(r['check_max_abs_err'] for r in checks):.2e}")
    common.print_noisy(ok, "layer")
    common.print_errors(results, "layer")
    print(f"total wall time {wall_s:.1f} s")


CSV_FIELDS = ("size", "num_nodes", "num_edges", "features", "heads", "layer", "channels", "mode",
              "provider", *common.RESULT_FIELDS)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        _preload()
        return common.worker_main(args.worker, measure_layer)
    if args.serve:
        return common.serve_main(measure_layer, _preload)

    specs = build_specs(args)
    start = time.perf_counter()
    results = common.run_all(common.make_runner(args, __file__), specs,
                             lambda s: f"{s['size']} {s['layer']} C={s['channels']} "
                                       f"{s['mode']} {s['provider']}")
    results = summarize(results)
    print_report(args, results, time.perf_counter() - start)
    if args.csv:
        common.write_csv(args.csv, results, CSV_FIELDS)
        print(f"wrote {args.csv}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
