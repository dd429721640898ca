#!/usr/bin/env python
"""Benchmark pyg_attn's fused edge-attention ops against PyG-style attention.

Providers
    pyg_attn   ``pyg_attn.ops.graph_attention`` / ``gat_attention`` with
               ``backend=None`` (the fused C++ kernel on CPU), on a graph
               prepared once with ``pyg_attn.ops.prepare`` outside the timed region.
    pyg_attn-triton  the same with ``backend="triton"`` (Triton kernels; CUDA tensors,
               ``--device cuda``; on CPU only under ``TRITON_INTERPRET=1``).
    reference  the same ops with ``backend="reference"`` (pure PyTorch), given the
               plain ``edge_index`` tensor (it needs no CSR).
    pyg        what PyG's ``TransformerConv`` (``--score dot``) and ``GATConv``
               (``--score gat``) do: gather per edge with ``index_select``,
               ``torch_geometric.utils.softmax(alpha, dst, num_nodes=N)``, multiply,
               ``torch_geometric.utils.scatter(..., reduce="sum")`` - i.e. with
               ``E x H x C`` messages materialised.
    pyg-csr    PyG's fastest path for the same computation: edges sorted by
               destination once outside the timed region (as a ``SparseTensor`` /
               CSR input gives them), ``softmax(alpha, ptr=ptr)`` and
               ``segment(msg, ptr, reduce="sum")`` (segment reductions instead of
               scatters).

Every (size, score, C, mode, provider) measurement runs in its own process (forked
from a preloaded server process that never ran a tensor op, or, with
``--isolation exec``, a fresh ``python bench_ops.py --worker``), which allocates
its inputs, resets the peak RSS and reports ``peak MB`` = peak RSS during warm-up
and timed runs minus the RSS before them (CUDA: the caching allocator's peak),
plus the prepared graph of the providers that prepare one outside the timed region
(``pyg_attn``'s CSR/CSC, ``pyg-csr``'s sorted edges and pointer): what a user holds
to run the op.  That machinery (worker processes, timing loop, memory meter,
report helpers) is ``common.py``'s, shared with the other benchmarks.

Run ``python benchmarks/bench_ops.py --help`` for the options; see README.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402  (also puts the repository root on sys.path)
from common import SIZES  # noqa: E402

PROVIDERS = ("pyg_attn", "pyg_attn-triton", "reference", "pyg", "pyg-csr")
DEFAULT_PROVIDERS = ("pyg_attn", "reference", "pyg", "pyg-csr")  # pyg_attn-triton: ask for it
BASELINES = ("pyg", "pyg-csr")  # PyG's default path and its fastest one
MODES = ("forward", "backward", "full")
SCORES = ("dot", "gat")
# The reference provider is skipped above this many edges unless --providers
# names it explicitly (it materialises E x H x C tensors like pyg, but is not
# what anyone should run at that scale; see README.md).
REFERENCE_DEFAULT_MAX_EDGES = 500_000
CHECK_TOL = 1e-4
NEGATIVE_SLOPE = 0.2


# ============================================================================ inputs
def make_inputs(score: str, num_nodes: int, heads: int, channels: int, seed: int, device):
    import torch

    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen).to(device)  # noqa: E731
    if score == "dot":
        tensors = {"q": randn(num_nodes, heads, channels), "k": randn(num_nodes, heads, channels),
                   "v": randn(num_nodes, heads, channels)}
    else:
        tensors = {"a_src": randn(num_nodes, heads), "a_dst": randn(num_nodes, heads),
                   "v": randn(num_nodes, heads, channels)}
    grad_out = randn(num_nodes, heads, channels)
    return tensors, grad_out


# ============================================================================ providers
def _pyg_scores(score: str, t: dict, src, dst, scale: float):
    """Per-edge scores ``[E, H]`` as PyG's layers compute them (gathered per edge)."""
    import torch.nn.functional as F

    if score == "dot":
        return (t["q"].index_select(0, dst) * t["k"].index_select(0, src)).sum(-1) * scale
    return F.leaky_relu(t["a_src"].index_select(0, src) + t["a_dst"].index_select(0, dst),
                        NEGATIVE_SLOPE)


def pyg_attention(score: str, t: dict, src, dst, num_nodes: int, scale: float):
    """PyG's TransformerConv / GATConv attention: gather, softmax, scatter-sum."""
    from torch_geometric.utils import scatter, softmax

    alpha = softmax(_pyg_scores(score, t, src, dst, scale), dst, num_nodes=num_nodes)
    msg = t["v"].index_select(0, src) * alpha.unsqueeze(-1)
    return scatter(msg, dst, dim=0, dim_size=num_nodes, reduce="sum")


def pyg_csr_graph(edge_index, num_nodes: int):
    """``(src, dst, ptr)``: the edges sorted by destination and the row pointer, the
    form in which PyG's softmax and aggregation take the segment (CSR) path."""
    import torch
    from torch_geometric.utils.sparse import index2ptr

    dst, perm = torch.sort(edge_index[1], stable=True)
    return edge_index[0][perm], dst, index2ptr(dst, num_nodes)


def pyg_csr_attention(score: str, t: dict, graph, num_nodes: int, scale: float):
    """PyG's attention on a CSR graph: ``softmax(..., ptr=ptr)`` and ``segment``."""
    from torch_geometric.utils import segment, softmax

    src, dst, ptr = graph
    alpha = softmax(_pyg_scores(score, t, src, dst, scale), dst, ptr=ptr, num_nodes=num_nodes)
    msg = t["v"].index_select(0, src) * alpha.unsqueeze(-1)
    return segment(msg, ptr, reduce="sum")


def build_call(provider: str, score: str, t: dict, edge_index, graph, num_nodes: int,
               scale: float):
    """Returns a no-argument callable computing ``out [N, H, C]`` for ``provider``."""
    from pyg_attn.ops import gat_attention, graph_attention

    if provider == "pyg":
        src, dst = edge_index[0], edge_index[1]
        return lambda: pyg_attention(score, t, src, dst, num_nodes, scale)
    if provider == "pyg-csr":
        return lambda: pyg_csr_attention(score, t, graph, num_nodes, scale)
    backend, g = {"pyg_attn": (None, graph), "pyg_attn-triton": ("triton", graph)}.get(
        provider, ("reference", edge_index))
    if score == "dot":
        return lambda: graph_attention(t["q"], t["k"], t["v"], g, scale=scale, backend=backend)
    return lambda: gat_attention(t["a_src"], t["a_dst"], t["v"], g,
                                 negative_slope=NEGATIVE_SLOPE, backend=backend)


def prepared_graph(provider: str, edge_index, num_nodes: int):
    """What ``provider`` builds once per graph outside the timed region: our
    ``prepare()`` CSR/CSC, ``pyg-csr``'s sorted edges and pointer, else ``None``."""
    if provider.startswith("pyg_attn"):
        from pyg_attn.ops import prepare
        return prepare(edge_index, num_nodes)
    if provider == "pyg-csr":
        return pyg_csr_graph(edge_index, num_nodes)
    return None


class ScatterSpy:
    """Counts calls into torch_scatter while active (does PyG's path use it?)."""

    def __init__(self):
        self.calls = 0
        self.saved = {}
        try:
            import torch_scatter
            self.module = torch_scatter
        except Exception:  # noqa: BLE001 - not installed or broken
            self.module = None

    def __enter__(self):
        if self.module is None:
            return self
        for name in dir(self.module):
            fn = getattr(self.module, name)
            if callable(fn) and not name.startswith("_") and not isinstance(fn, type):
                self.saved[name] = fn
                setattr(self.module, name, self._wrap(fn))
        return self

    def _wrap(self, fn):
        def wrapped(*args, **kwargs):
            self.calls += 1
            return fn(*args, **kwargs)
        return wrapped

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(self.module, name, fn)


# ============================================================================ worker
def measure(spec: dict) -> dict:
    """One (size, score, C, mode, provider) measurement; runs in its own process."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    provider, score, mode = spec["provider"], spec["score"], spec["mode"]
    heads, channels = spec["heads"], spec["channels"]
    num_nodes, num_edges = SIZES[spec["size"]]
    scale = channels ** -0.5
    sync = common.device_sync(device)

    # Lazy one-time initialisation (thread pool, kernels, autograd engine) on a
    # tiny graph, so it is neither timed nor counted as the op's memory.
    tiny_ei, _ = common.make_graph(16, 64, 0, spec["zipf"])
    tiny_ei = tiny_ei.to(device)
    tiny_t, tiny_g = make_inputs(score, 16, heads, channels, 0, device)
    tiny_graph = prepared_graph(provider, tiny_ei, 16)
    with ScatterSpy() as spy:
        if mode != "forward":
            for x in tiny_t.values():
                x.requires_grad_(True)
        common.time_loop(build_call(provider, score, tiny_t, tiny_ei, tiny_graph, 16, scale), mode,
                   tiny_t, tiny_g, 1, 1, 1, 0.0, sync)
    del tiny_t, tiny_g, tiny_graph, tiny_ei

    # The measured graph and inputs (allocated before the memory baseline).
    edge_index, graph_stats = common.make_graph(num_nodes, num_edges, spec["seed"], spec["zipf"])
    edge_index = edge_index.to(device)
    inputs, grad_out = make_inputs(score, num_nodes, heads, channels, spec["seed"] + 1, device)
    if mode != "forward":
        for x in inputs.values():
            x.requires_grad_(True)
    sync()
    t0 = time.perf_counter()
    graph = prepared_graph(provider, edge_index, num_nodes)
    sync()
    prepare_ms = None if graph is None else 1e3 * (time.perf_counter() - t0)
    prepare_mb = None if graph is None else common.tensor_bytes(graph) / 2**20
    fn = build_call(provider, score, inputs, edge_index, graph, num_nodes, scale)

    result = {
        **spec, "num_nodes": num_nodes, "num_edges": num_edges,
        **common.with_prepared(common.timed_region(fn, mode, inputs, grad_out, spec, device, sync),
                               prepare_mb),
        "backend": common.provider_backend(provider, device), "graph": graph_stats,
        "prepare_ms": prepare_ms, "prepare_mb": prepare_mb,
        "torch_scatter_calls": spy.calls if provider in BASELINES else None,
        "torch_scatter_available": spy.module is not None,
        "versions": common.versions(),
    }
    if spec.get("check") and provider != "pyg":
        with torch.no_grad():
            ours = fn()
            theirs = pyg_attention(score, inputs, edge_index[0], edge_index[1], num_nodes, scale)
            err = (ours - theirs).abs().max().item() if ours.numel() else 0.0
        result["check_max_abs_err"] = err
        result["check_ok"] = bool(err <= CHECK_TOL)
    return result


# ============================================================================ driver
_LOAD_AT_START = "?"
_GIT_AT_START = "?"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark pyg_attn's fused edge attention against PyG-style attention.")
    p.add_argument("--providers", nargs="+", choices=PROVIDERS, default=None,
                   help=f"default: {' '.join(DEFAULT_PROVIDERS)}; 'reference' is skipped above "
                        f"{REFERENCE_DEFAULT_MAX_EDGES:,} edges unless named here")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["cora", "50k", "arxiv"],
                   help="graph sizes (default: all three)")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="default: all three")
    p.add_argument("--score", nargs="+", choices=SCORES, default=list(SCORES),
                   help="score function(s): dot (TransformerConv) and/or gat (GATConv); default both")
    p.add_argument("--plot", metavar="PATH", help="bar chart of speed-up vs pyg (matplotlib)")
    common.add_common_args(p)
    args = p.parse_args(argv)
    common.resolve_common_args(p, args)
    return args


def build_specs(args):
    explicit = args.providers is not None
    providers = list(dict.fromkeys(args.providers or DEFAULT_PROVIDERS))
    specs, skipped = [], []
    for size in args.sizes:
        for score in args.score:
            for channels in args.channels:
                checked = set()
                for mode in args.modes:
                    for provider in providers:
                        if (provider == "reference" and not explicit
                                and SIZES[size][1] > REFERENCE_DEFAULT_MAX_EDGES):
                            if (size, score, channels) not in skipped:
                                skipped.append((size, score, channels))
                            continue
                        check = (provider != "pyg" and provider not in checked
                                 and "pyg" in providers)
                        checked.add(provider)
                        specs.append(common.spec_of(
                            args, size=size, score=score, channels=channels, mode=mode,
                            provider=provider, check=check))
    return specs, providers, sorted({s for s, _, _ in skipped}, key=list(SIZES).index)


def summarize(results, providers):
    """Adds the ratios to both PyG baselines (``common.add_ratios``) and sorts the rows."""
    common.add_ratios(results, "score", "pyg-csr")
    order = {p: k for k, p in enumerate(providers)}
    results.sort(key=lambda r: (list(SIZES).index(r["size"]), SCORES.index(r["score"]),
                                r["channels"], MODES.index(r["mode"]), order[r["provider"]]))
    return results


def print_report(args, results, skipped_reference, wall_s):
    ok = [r for r in results if "error" not in r]
    first = ok[0] if ok else {}
    v = first.get("versions", {})
    print("=" * 96)
    print("pyg_attn edge-attention benchmark")
    print(f"  torch {v.get('torch', '?')}, torch_geometric {v.get('torch_geometric', '?')}, "
          f"pyg_attn at git {_GIT_AT_START}"
          + ("" if common.git_state() == _GIT_AT_START else f" (at start; now {common.git_state()})"))
    ts_calls = [r["torch_scatter_calls"] for r in ok if r["provider"] in BASELINES]
    avail = v.get("torch_scatter")
    print(f"  torch_scatter available: {'yes (' + avail + ')' if avail else 'NO'}; "
          + ("called by the pyg baseline: "
             + ("yes" if any(ts_calls) else "no (this torch_geometric's utils.scatter/softmax use "
                                             "torch.scatter_add_/scatter_reduce_ here)")
             if ts_calls else "pyg baseline not run"))
    backends = sorted({r["backend"] for r in ok if r["provider"] == "pyg_attn"})
    if backends:
        print(f"  pyg_attn backend=None resolved to: {', '.join(backends)}"
              + ("" if backends in (["cpu"], ["triton"]) else "  (NOT the fused kernel)"))
    print(f"  device {args.device}, torch threads {args.threads}, heads H={args.heads}, "
          f"float32, seed {args.seed}; {os.cpu_count()} CPUs, load average "
          f"{_LOAD_AT_START} at start, {common.load_average()} at end (other work on the machine skews timings)")
    print(f"  timing: time.perf_counter, median of up to {args.repeats} repeats (>= "
          f"{args.min_repeats}, stop after {args.time_budget:g} s timed) after >= {args.warmup} "
          f"warm-up runs and >= {args.warmup_seconds:g} s; backward = only .backward() after an untimed forward; full = forward + backward")
    methods = sorted({r["mem_method"] for r in ok})
    print("  peak MB: extra peak over the RSS after allocating inputs, one process per row "
          f"({', '.join(methods) or '?'})"
          + ("; getrusage fallback: /proc/self/clear_refs not writable, peak since process "
             "start (lower bound)" if "getrusage_maxrss" in methods else ""))
    print("  pyg_attn: graph prepared once per process with pyg_attn.ops.prepare() OUTSIDE the "
          "timed region and memory baseline (fixed graph across epochs)")
    for size in args.sizes:
        rows = [r for r in ok if r["size"] == size]
        if not rows:
            continue
        g = rows[0]["graph"]
        prep = [r for r in rows if r.get("prepare_ms") is not None]
        print(f"  graph {size}: N={rows[0]['num_nodes']:,} E={rows[0]['num_edges']:,}, "
              f"in-degree max {g['max_in_degree']:,} median {g['median_in_degree']:g}, "
              f"{g['zero_in_degree_pct']:.1f}% no in-edge"
              + (f"; prepare() {statistics.median(r['prepare_ms'] for r in prep):.1f} ms, "
                 f"CSR {prep[0]['prepare_mb']:.1f} MB" if prep else ""))
    if skipped_reference:
        print(f"  reference provider skipped at {', '.join(skipped_reference)} (> "
              f"{REFERENCE_DEFAULT_MAX_EDGES:,} edges; name it in --providers to run it)")
    print()
    common.print_table(results, "score", 5)
    for r in ok:
        if "check_ok" in r:
            status = "ok" if r["check_ok"] else "WARNING: MISMATCH"
            if not r["check_ok"]:
                print(f"WARNING: {r['provider']} forward output differs from pyg's at "
                      f"size={r['size']} score={r['score']} C={r['channels']}: max abs err "
                      f"{r['check_max_abs_err']:.3g} > {CHECK_TOL:g}")
            r["check_status"] = status
    common.print_noisy(ok, "score")
    checks = [r for r in ok if "check_ok" in r]
    if checks:
        bad = [r for r in checks if not r["check_ok"]]
        worst = max(r["check_max_abs_err"] for r in checks)
        print(f"output check vs pyg (forward, atol {CHECK_TOL:g}): {len(checks) - len(bad)}/"
              f"{len(checks)} ok, worst max abs err {worst:.2e}")
    common.print_errors(results, "score")
    print(f"total wall time {wall_s:.1f} s")


CSV_FIELDS = ("size", "num_nodes", "num_edges", "heads", "score", "channels", "mode", "provider",
              *common.RESULT_FIELDS)


def write_plot(path, results, providers):
    """One panel per graph size: bars of speed-up vs pyg (log scale) per provider."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401

    others = [p for p in providers if p != "pyg"]
    rows = [r for r in results if r.get("speedup_vs_pyg") is not None and r["provider"] != "pyg"]
    sizes = [s for s in SIZES if any(r["size"] == s for r in rows)]
    if not rows or not others:
        print(f"plot skipped: no speed-ups vs pyg to plot ({path})", file=sys.stderr)
        return
    index = {(r["size"], r["score"], r["channels"], r["mode"], r["provider"]): r["speedup_vs_pyg"]
             for r in rows}
    groups = {s: list(dict.fromkeys((r["score"], r["channels"], r["mode"]) for r in rows
                                    if r["size"] == s)) for s in sizes}
    most = max(len(g) for g in groups.values())
    fig, axes = plt.subplots(len(sizes), 1, squeeze=False,
                             figsize=(min(16.0, max(6.0, 0.45 * most * len(others) + 1.5)),
                                      3.2 * len(sizes)))
    width = 0.8 / len(others)
    for ax, size in zip(axes[:, 0], sizes):
        keys = groups[size]
        for k, prov in enumerate(others):
            xs = [x + (k - (len(others) - 1) / 2) * width for x in range(len(keys))]
            ys = [index.get((size, *key, prov)) or 0.0 for key in keys]
            bars = ax.bar(xs, ys, width, label=prov, color=f"C{k}")
            for b, y in zip(bars, ys):
                if y:
                    ax.annotate(f"{y:.1f}", (b.get_x() + b.get_width() / 2, y), ha="center",
                                va="bottom", fontsize=6)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda y, _: f"{y:g}x"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{sc} C={c}\n{m}" for sc, c, m in keys], fontsize=7)
        n, e = SIZES[size]
        ax.set_title(f"{size} (N={n:,}, E={e:,})", fontsize=9)
        ax.set_ylabel("speed-up vs pyg", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("pyg_attn edge attention vs PyG-style gather/softmax/scatter "
                 "(pyg ms / provider ms)", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        return common.worker_main(args.worker, measure)
    if args.serve:
        return common.serve_main(measure)

    global _LOAD_AT_START, _GIT_AT_START
    _LOAD_AT_START, _GIT_AT_START = common.load_average(), common.git_state()
    specs, providers, skipped = build_specs(args)
    if not specs:
        print("nothing to run", file=sys.stderr)
        return 2
    start = time.perf_counter()
    results = common.run_all(common.make_runner(args, __file__), specs,
                             lambda s: f"{s['size']} {s['score']} C={s['channels']} "
                                       f"{s['mode']} {s['provider']}")
    results = summarize(results, providers)
    print_report(args, results, skipped, time.perf_counter() - start)
    if args.csv:
        common.write_csv(args.csv, results, CSV_FIELDS)
        print(f"wrote {args.csv}")
    if args.plot:
        write_plot(args.plot, results, providers)
        print(f"wrote {args.plot}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
