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
to run the op.

Run ``python benchmarks/bench_ops.py --help`` for the options; see README.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without PYTHONPATH
    sys.path.insert(0, str(ROOT))

PROVIDERS = ("pyg_attn", "pyg_attn-triton", "reference", "pyg", "pyg-csr")
DEFAULT_PROVIDERS = ("pyg_attn", "reference", "pyg", "pyg-csr")  # pyg_attn-triton: ask for it
BASELINES = ("pyg", "pyg-csr")  # PyG's default path and its fastest one
SIZES = {  # name: (num_nodes, num_edges)
    "cora": (2_708, 10_556),
    "50k": (50_000, 500_000),
    "arxiv": (169_343, 1_166_243),
}
MODES = ("forward", "backward", "full")
SCORES = ("dot", "gat")
# The reference provider is skipped above this many edges unless --providers
# names it explicitly (it materialises E x H x C tensors like pyg, but is not
# what anyone should run at that scale; see README.md).
REFERENCE_DEFAULT_MAX_EDGES = 500_000
CHECK_TOL = 1e-4
NOISY_PCT = 10.0  # flag rows timed while other processes used more of the machine
NEGATIVE_SLOPE = 0.2


# ============================================================================ graphs
def make_graph(num_nodes: int, num_edges: int, seed: int, exponent: float):
    """A deterministic graph with heavy-tailed (Zipf-like) in-degrees.

    Destinations are drawn i.i.d. with probability proportional to
    ``rank ** -exponent`` (ranks assigned to nodes by a random permutation, so
    hubs are spread over the id range), sources uniformly; duplicates and self
    loops are kept as ordinary edges.  Edges are sorted by (source, destination)
    like a coalesced PyG ``edge_index``.  Returns ``(edge_index [2, E] int64 CPU
    tensor, stats dict)``.
    """
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    weight = np.arange(1, num_nodes + 1, dtype=np.float64) ** (-exponent)
    cdf = np.cumsum(weight)
    cdf /= cdf[-1]
    rank = np.minimum(np.searchsorted(cdf, rng.random(num_edges), side="right"), num_nodes - 1)
    node_of_rank = rng.permutation(num_nodes)
    dst = node_of_rank[rank]
    src = rng.integers(0, num_nodes, num_edges)
    order = np.lexsort((dst, src))
    edge_index = torch.from_numpy(np.stack([src[order], dst[order]]).astype(np.int64))
    deg = np.bincount(dst, minlength=num_nodes)
    stats = {"max_in_degree": int(deg.max()), "median_in_degree": float(np.median(deg)),
             "zero_in_degree_pct": 100.0 * float((deg == 0).mean())}
    return edge_index.contiguous(), stats


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


def provider_backend(provider: str, device) -> str:
    if provider in BASELINES:
        return "torch_geometric"
    if provider == "reference":
        return "reference"
    from pyg_attn.ops import select_backend
    if provider == "pyg_attn-triton":
        return select_backend("triton", device)
    return select_backend(None, device)


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


# ============================================================================ memory
def _proc_status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak extra memory of a code region, measured the same way for every provider.

    CPU: write ``5`` to ``/proc/self/clear_refs`` (resets VmHWM to the current RSS),
    then peak = VmHWM after the region - VmRSS before it.  If that file is not
    writable: ``resource.getrusage`` maxrss after - RSS before (a lower bound if
    the process peaked higher before the region).  CUDA: the caching allocator's
    ``max_memory_allocated`` after ``reset_peak_memory_stats`` minus
    ``memory_allocated`` before.
    """

    def __init__(self, device):
        self.device = device
        self.method = None

    def start(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            self.method = "cuda_max_memory_allocated"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "proc_VmHWM"
        except OSError:
            self.method = "getrusage_maxrss"
        self.before = _proc_status_kb("VmRSS") or 0

    def stop_mb(self) -> float:
        import torch

        if self.method == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.before) / 2**20
        if self.method == "proc_VmHWM":
            peak = _proc_status_kb("VmHWM") or 0
        else:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
        return max(peak - self.before, 0) / 1024.0


class ForeignLoad:
    """Share of the machine's CPU time used by *other* processes during a region
    (from /proc/stat minus this process's own CPU time): flags noisy timings."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.cpus = os.cpu_count() or 1

    @staticmethod
    def _busy_ticks():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return sum(v) - v[3] - (v[4] if len(v) > 4 else 0)  # minus idle, iowait
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        t = os.times()
        self.start_state = (self._busy_ticks(), t.user + t.system, time.perf_counter())

    def stop_pct(self):
        busy0, own0, wall0 = self.start_state
        busy1, t, wall1 = self._busy_ticks(), os.times(), time.perf_counter()
        if busy0 is None or busy1 is None or wall1 - wall0 < 0.5:
            return None  # clock-tick resolution: not meaningful for short regions
        other = (busy1 - busy0) / self.tick - (t.user + t.system - own0)
        return max(0.0, 100.0 * other / ((wall1 - wall0) * self.cpus))


# ============================================================================ worker
def _sync(device):
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _time_loop(fn, mode, inputs, grad_out, warmup, repeats, min_repeats, budget, sync,
               warmup_s=0.0):
    """Runs untimed iterations until ``warmup`` of them are done and ``warmup_s``
    seconds have passed, then up to ``repeats`` timed iterations (stops early once
    ``min_repeats`` are done and ``budget`` seconds of timed work are spent).
    Returns the list of per-iteration seconds."""
    params = list(inputs.values())
    start, warmed = time.perf_counter(), 0
    while warmed < warmup or time.perf_counter() - start < warmup_s:
        _one_iteration(fn, mode, params, grad_out, sync)
        warmed += 1
    times = []
    while len(times) < repeats:
        times.append(_one_iteration(fn, mode, params, grad_out, sync))
        if len(times) >= min_repeats and sum(times) >= budget:
            break
    return times


def _one_iteration(fn, mode, params, grad_out, sync) -> float:
    """One forward / backward / full step; returns the seconds of its timed part."""
    import torch

    if mode == "forward":
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            out = fn()
            sync()
            dt = time.perf_counter() - t0
    elif mode == "backward":
        out = fn()
        sync()
        t0 = time.perf_counter()
        out.backward(grad_out)
        sync()
        dt = time.perf_counter() - t0
    else:  # full
        sync()
        t0 = time.perf_counter()
        out = fn()
        out.backward(grad_out)
        sync()
        dt = time.perf_counter() - t0
    out = None  # freed outside the timed region
    for p in params:
        p.grad = None
    return dt


def timed_region(fn, mode, inputs, grad_out, spec: dict, device, sync) -> dict:
    """Times ``fn`` per the spec's repeat settings and measures its peak extra
    memory and the CPU other processes used meanwhile (the result fields)."""
    meter, foreign = PeakMemory(device), ForeignLoad()
    meter.start()
    foreign.start()
    times = _time_loop(fn, mode, inputs, grad_out, spec["warmup"], spec["repeats"],
                       spec["min_repeats"], spec["budget"], sync, spec.get("warmup_s", 0.0))
    other_cpu_pct = foreign.stop_pct()
    peak_mb = meter.stop_mb()
    return {"ms": 1e3 * statistics.median(times), "ms_min": 1e3 * min(times),
            "timed_repeats": len(times), "peak_mb": peak_mb, "mem_method": meter.method,
            "other_cpu_pct": other_cpu_pct}


def measure(spec: dict) -> dict:
    """One (size, score, C, mode, provider) measurement; runs in its own process."""
    import torch

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    provider, score, mode = spec["provider"], spec["score"], spec["mode"]
    heads, channels = spec["heads"], spec["channels"]
    num_nodes, num_edges = SIZES[spec["size"]]
    scale = channels ** -0.5
    sync = _sync(device)

    # Lazy one-time initialisation (thread pool, kernels, autograd engine) on a
    # tiny graph, so it is neither timed nor counted as the op's memory.
    tiny_ei, _ = make_graph(16, 64, 0, spec["zipf"])
    tiny_ei = tiny_ei.to(device)
    tiny_t, tiny_g = make_inputs(score, 16, heads, channels, 0, device)
    tiny_graph = prepared_graph(provider, tiny_ei, 16)
    with ScatterSpy() as spy:
        if mode != "forward":
            for x in tiny_t.values():
                x.requires_grad_(True)
        _time_loop(build_call(provider, score, tiny_t, tiny_ei, tiny_graph, 16, scale), mode,
                   tiny_t, tiny_g, 1, 1, 1, 0.0, sync)
    del tiny_t, tiny_g, tiny_graph, tiny_ei

    # The measured graph and inputs (allocated before the memory baseline).
    edge_index, graph_stats = make_graph(num_nodes, num_edges, spec["seed"], spec["zipf"])
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
    prepare_mb = None if graph is None else _tensor_bytes(graph) / 2**20
    fn = build_call(provider, score, inputs, edge_index, graph, num_nodes, scale)

    result = {
        **spec, "num_nodes": num_nodes, "num_edges": num_edges,
        **with_prepared(timed_region(fn, mode, inputs, grad_out, spec, device, sync),
                        prepare_mb),
        "backend": provider_backend(provider, device), "graph": graph_stats,
        "prepare_ms": prepare_ms, "prepare_mb": prepare_mb,
        "torch_scatter_calls": spy.calls if provider in BASELINES else None,
        "torch_scatter_available": spy.module is not None,
        "versions": _versions(),
    }
    if spec.get("check") and provider != "pyg":
        with torch.no_grad():
            ours = fn()
            theirs = pyg_attention(score, inputs, edge_index[0], edge_index[1], num_nodes, scale)
            err = (ours - theirs).abs().max().item() if ours.numel() else 0.0
        result["check_max_abs_err"] = err
        result["check_ok"] = bool(err <= CHECK_TOL)
    return result


def _tensor_bytes(obj) -> int:
    """Bytes held by the tensors of ``obj``: a tuple of tensors, or the tensor
    attributes of an object (a PreparedGraph)."""
    import torch

    fields = obj if isinstance(obj, tuple) else (vars(obj) if hasattr(obj, "__dict__") else {})
    values = fields if isinstance(fields, tuple) else fields.values()
    return sum(t.numel() * t.element_size() for t in values if isinstance(t, torch.Tensor))


def with_prepared(timed: dict, prepare_mb) -> dict:
    """``timed`` with the prepared graph's MB added to its peak (``peak_mb``); the
    region's own peak stays in ``peak_mb_region``."""
    timed["peak_mb_region"] = timed["peak_mb"]
    if prepare_mb is not None and timed["peak_mb"] is not None:
        timed["peak_mb"] = timed["peak_mb"] + prepare_mb
    return timed


def _versions() -> dict:
    import torch
    import torch_geometric

    out = {"torch": torch.__version__, "torch_geometric": torch_geometric.__version__}
    try:
        import torch_scatter
        out["torch_scatter"] = torch_scatter.__version__
    except Exception:  # noqa: BLE001
        out["torch_scatter"] = None
    return out


def _preload() -> None:
    """Imports everything a measurement needs (and builds/loads the fused kernel)
    without running a tensor op, so forked workers start warm but clean."""
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torch_geometric.utils  # noqa: F401
    from pyg_attn.ops.cpu import load_extension
    try:
        import torch_scatter  # noqa: F401
    except Exception:  # noqa: BLE001
        pass
    load_extension()


def _protocol_stdout():
    """A private duplicate of stdout for JSON; fd 1 is pointed at stderr so that
    stray prints (warnings, library chatter) cannot corrupt the protocol."""
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return channel


#: The float unary ops ATen runs through MKL's VML (``aten/src/ATen/cpu/vml.h``).
VML_OPS = ("exp", "log", "log2", "log10", "sqrt", "sin", "cos", "tan", "tanh", "asin", "acos",
           "atan", "erf", "erfc", "erfinv", "trunc")


def resolve_vml_dispatch() -> None:
    """Calls each of :data:`VML_OPS` once on a few elements (one thread, below any
    grain size), in float32 and float64.

    oneMKL 2024.2 (bundled with the torch wheels) picks a VML function's kernel on
    its first call; when that first call runs on several intra-op threads at once,
    one thread can run the low-accuracy AVX2 "EP" kernel for its whole chunk
    (pytorch/pytorch#188792).  In a fresh worker the first such call was PyG's
    softmax ``exp`` (after the ``lin`` matmul) in bench_layers.py's output check:
    in 2-3 % of the workers here PyG's attention weights were off by up to 1.5e-4
    relative and the check flagged a 1.7e-4 "difference" of pyg_attn's GATConv
    (the corrupted chunk is bit-for-bit MKL's AVX2 EP ``vsExp``; with this warm-up
    0 of 1000 fresh workers)."""
    import torch

    for dtype in (torch.float32, torch.float64):
        x = torch.full((4,), 0.5, dtype=dtype)
        for name in VML_OPS:
            getattr(torch, name)(x)


def _measure_safely(spec: dict, measure_fn=None) -> dict:
    try:
        resolve_vml_dispatch()  # before any multi-threaded op of the measurement
        return (measure_fn or measure)(spec)
    except BaseException:  # noqa: BLE001 - reported to the driver as a failed row
        return {**spec, "error": traceback.format_exc()}


def worker_main(spec_json: str, measure_fn=None) -> int:
    channel = _protocol_stdout()
    result = _measure_safely(json.loads(spec_json), measure_fn)
    channel.write(json.dumps(result) + "\n")
    channel.flush()
    return 0


def serve_main(measure_fn=None, preload=None) -> int:
    """Fork server: reads one JSON spec per line on stdin, forks a fresh process
    per spec, and writes that process's JSON result as one line on stdout.
    ``measure_fn`` (default :func:`measure`) and ``preload`` (default
    :func:`_preload`) let other benchmark scripts reuse the server."""
    channel = _protocol_stdout()
    (preload or _preload)()
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child
            os.close(read_fd)
            code = 0
            try:
                data = json.dumps(_measure_safely(spec, measure_fn)).encode()
                with os.fdopen(write_fd, "wb") as f:
                    f.write(data)
            except BaseException:  # noqa: BLE001
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        try:
            result = json.loads(data) if data else None
        except ValueError:
            result = None
        if result is None:
            result = {**spec, "error": f"worker process died (wait status {status}); "
                                       "killed for memory?"}
        channel.write(json.dumps(result) + "\n")
        channel.flush()
    return 0


# ============================================================================ driver
class ForkRunner:
    """Drives ``script --serve`` (default: this file's fork server)."""

    def __init__(self, env, script=None):
        script = str(Path(script or __file__).resolve())
        self.proc = subprocess.Popen([sys.executable, script, "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env)

    def run(self, spec: dict) -> dict:
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark server exited (code {self.proc.wait()}); "
                               "see its error output above")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


class ExecRunner:
    """Runs ``script --worker SPEC`` per measurement (default: this file)."""

    def __init__(self, env, script=None):
        self.env = env
        self.script = str(Path(script or __file__).resolve())

    def run(self, spec: dict) -> dict:
        proc = subprocess.run([sys.executable, self.script, "--worker",
                               json.dumps(spec)], stdout=subprocess.PIPE, text=True,
                              env=self.env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            return {**spec, "error": f"worker exited with code {proc.returncode}"}
        return json.loads(lines[-1])

    def close(self):
        pass


def _git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pyg_attn"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout.strip()
        return f"{head}{' (pyg_attn/ has uncommitted changes)' if dirty else ''}" if head else "?"
    except Exception:  # noqa: BLE001
        return "?"


def _load() -> str:
    try:
        return "{:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())
    except OSError:
        return "?"


_LOAD_AT_START = "?"
_GIT_AT_START = "?"


def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options shared with bench_layers.py: sizes of the model, timing, isolation."""
    p.add_argument("--heads", type=int, default=8, help="H (default: 8)")
    p.add_argument("--channels", nargs="+", type=int, default=[8, 16],
                   help="C per head (default: 8 16)")
    p.add_argument("--repeats", type=int, default=None,
                   help="max timed repeats (default 10, 3 with --quick)")
    p.add_argument("--min-repeats", type=int, default=3,
                   help="timed repeats always run (capped at --repeats; default 3)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop repeating once this many seconds were timed (and "
                        "--min-repeats done); default 2.0, 0.2 with --quick")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs (default 2, 1 with --quick)")
    p.add_argument("--warmup-seconds", type=float, default=None,
                   help="keep warming up until this many seconds have passed (default 1.5, 0 "
                        "with --quick): a fresh 2-thread process ran the first ~1 s of its "
                        "kernels up to 2.5x slower here")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each worker (default: 2)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument("--seed", type=int, default=0, help="graph and input seed (default: 0)")
    p.add_argument("--zipf", type=float, default=0.7,
                   help="destination weight = rank ** -zipf, i.e. in-degree density tail ~ d ** "
                        "-(1 + 1/zipf) (default: 0.7)")
    p.add_argument("--isolation", choices=("auto", "fork", "exec"), default="auto",
                   help="per-measurement process: forked from a preloaded server (fast) "
                        "or a fresh interpreter; auto (default) = fork on cpu, exec on cuda")
    p.add_argument("--csv", metavar="PATH", help="also write the rows as CSV")
    p.add_argument("--quick", action="store_true", help="few repeats: a smoke test")
    p.add_argument("--worker", metavar="SPEC_JSON", help=argparse.SUPPRESS)
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)


def resolve_common_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fills the --quick dependent defaults and checks the shared options."""
    if args.repeats is None:
        args.repeats = 3 if args.quick else 10
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.time_budget is None:
        args.time_budget = 0.2 if args.quick else 2.0
    if args.warmup_seconds is None:
        args.warmup_seconds = 0.0 if args.quick else 1.5
    if args.quick:
        args.min_repeats = min(args.min_repeats, 2)
    args.min_repeats = max(1, min(args.min_repeats, args.repeats))
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1 or args.heads < 1 \
            or any(c < 1 for c in args.channels) or args.warmup_seconds < 0:
        p.error("--repeats, --threads, --heads, --channels must be >= 1 and --warmup, "
                "--warmup-seconds >= 0")


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
    add_common_args(p)
    args = p.parse_args(argv)
    resolve_common_args(p, args)
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
                        specs.append({
                            "size": size, "score": score, "channels": channels, "mode": mode,
                            "provider": provider, "heads": args.heads, "threads": args.threads,
                            "device": args.device, "seed": args.seed, "zipf": args.zipf,
                            "repeats": args.repeats, "min_repeats": args.min_repeats,
                            "warmup": args.warmup, "warmup_s": args.warmup_seconds,
                            "budget": args.time_budget, "check": check})
    return specs, providers, sorted({s for s, _, _ in skipped}, key=list(SIZES).index)


def _fmt(x, spec="{:.2f}"):
    return "-" if x is None else spec.format(x)


def print_table(results, kind: str, kind_width: int) -> None:
    """Prints one row per result: size, ``kind`` (the score or the layer), C, mode,
    provider, ms, peak MB and the ratios to PyG's default path (``pyg``) and to its
    fastest path (``pyg-csr`` / ``pyg-sparse``) (``ERROR`` for a failed row)."""
    header = ("size", kind, "C", "mode", "provider", "ms", "peak_MB", "speedup_vs_pyg",
              "mem_ratio_vs_pyg", "speedup_vs_best", "mem_vs_best")
    widths = (6, kind_width, 3, 8, 10, 10, 9, 14, 16, 15, 11)

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if k >= 5 else str(c).ljust(w)
                         for k, (c, w) in enumerate(zip(cells, widths)))

    print(line(header))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for r in results:
        head = (r["size"], r[kind], r["channels"], r["mode"], r["provider"])
        if "error" in r:
            print(line(head + ("ERROR",) + ("-",) * 5))
        else:
            print(line(head + (_fmt(r["ms"], "{:.3f}"), _fmt(r["peak_mb"], "{:.1f}"),
                               _fmt(r["speedup_vs_pyg"]), _fmt(r["mem_ratio_vs_pyg"], "{:.3f}"),
                               _fmt(r.get("speedup_vs_best")),
                               _fmt(r.get("mem_vs_best"), "{:.3f}"))))
    print()


def add_ratios(results, kind: str, best: str) -> None:
    """Adds the speed-up and memory ratio of every row against ``pyg`` (PyG's
    default path) and against ``best`` (its fastest path) measured in the same run,
    matching rows on (size, ``kind``, C, mode)."""
    def key(r):
        return (r["size"], r[kind], r["channels"], r["mode"])

    for baseline, speed, memory in (("pyg", "speedup_vs_pyg", "mem_ratio_vs_pyg"),
                                    (best, "speedup_vs_best", "mem_vs_best")):
        base = {key(r): r for r in results if r["provider"] == baseline and "error" not in r}
        for r in results:
            b = base.get(key(r))
            ok = b is not None and "error" not in r
            r[speed] = b["ms"] / r["ms"] if ok and r["ms"] > 0 else None
            r[memory] = r["peak_mb"] / b["peak_mb"] if ok and b["peak_mb"] > 0 else None


def summarize(results, providers):
    """Adds the ratios to both PyG baselines (:func:`add_ratios`) and sorts the rows."""
    add_ratios(results, "score", "pyg-csr")
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
          + ("" if _git_state() == _GIT_AT_START else f" (at start; now {_git_state()})"))
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
          f"{_LOAD_AT_START} at start, {_load()} at end (other work on the machine skews timings)")
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
    print_table(results, "score", 5)
    for r in ok:
        if "check_ok" in r:
            status = "ok" if r["check_ok"] else "WARNING: MISMATCH"
            if not r["check_ok"]:
                print(f"WARNING: {r['provider']} forward output differs from pyg's at "
                      f"size={r['size']} score={r['score']} C={r['channels']}: max abs err "
                      f"{r['check_max_abs_err']:.3g} > {CHECK_TOL:g}")
            r["check_status"] = status
    noisy = [r for r in ok if (r.get("other_cpu_pct") or 0.0) > NOISY_PCT]
    if noisy:
        print(f"NOTE: other processes used > {NOISY_PCT:g}% of the CPUs while these rows were "
              "timed (their times are inflated/noisy): "
              + ", ".join(f"{r['size']}/{r['score']}/C={r['channels']}/{r['mode']}/"
                          f"{r['provider']} ({r['other_cpu_pct']:.0f}%)" for r in noisy))
    else:
        worst = max((r.get("other_cpu_pct") or 0.0 for r in ok), default=0.0)
        print(f"CPU use by other processes during timed regions: at most {worst:.0f}% "
              "of the machine (measured for regions >= 0.5 s)")
    checks = [r for r in ok if "check_ok" in r]
    if checks:
        bad = [r for r in checks if not r["check_ok"]]
        worst = max(r["check_max_abs_err"] for r in checks)
        print(f"output check vs pyg (forward, atol {CHECK_TOL:g}): {len(checks) - len(bad)}/"
              f"{len(checks)} ok, worst max abs err {worst:.2e}")
    for r in results:
        if "error" in r:
            print(f"ERROR in {r['size']}/{r['score']}/C={r['channels']}/{r['mode']}/"
                  f"{r['provider']}:\n{r['error']}", file=sys.stderr)
    print(f"total wall time {wall_s:.1f} s")


CSV_FIELDS = ("size", "num_nodes", "num_edges", "heads", "score", "channels", "mode", "provider",
              "backend", "ms", "ms_min", "timed_repeats", "peak_mb", "peak_mb_region",
              "prepare_mb", "speedup_vs_pyg", "mem_ratio_vs_pyg", "speedup_vs_best",
              "mem_vs_best", "mem_method", "check_max_abs_err", "other_cpu_pct",
              "threads", "device",
              "error")


def write_csv(path, results, fields=CSV_FIELDS):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in results:
            row = dict(r)
            if "error" in row:
                row["error"] = row["error"].strip().splitlines()[-1]
            w.writerow(row)


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
        return worker_main(args.worker)
    if args.serve:
        return serve_main()

    global _LOAD_AT_START, _GIT_AT_START
    _LOAD_AT_START, _GIT_AT_START = _load(), _git_state()
    specs, providers, skipped = build_specs(args)
    if not specs:
        print("nothing to run", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    isolation = args.isolation
    if isolation == "auto":
        isolation = "exec" if args.device.startswith("cuda") else "fork"
    runner = ForkRunner(env) if isolation == "fork" else ExecRunner(env)
    start = time.perf_counter()
    results = []
    try:
        for k, spec in enumerate(specs, 1):
            r = runner.run(spec)
            results.append(r)
            tag = f"[{k}/{len(specs)}] {spec['size']} {spec['score']} C={spec['channels']} " \
                  f"{spec['mode']} {spec['provider']}"
            if "error" in r:
                print(f"{tag}: ERROR {r['error'].strip().splitlines()[-1]}", file=sys.stderr)
            else:
                print(f"{tag}: {r['ms']:.3f} ms, peak {r['peak_mb']:.1f} MB "
                      f"({r['timed_repeats']} repeats, other processes "
                      f"{_fmt(r.get('other_cpu_pct'), '{:.0f}')}% CPU)", file=sys.stderr,
                      flush=True)
    finally:
        runner.close()
    results = summarize(results, providers)
    print_report(args, results, skipped, time.perf_counter() - start)
    if args.csv:
        write_csv(args.csv, results)
        print(f"wrote {args.csv}")
    if args.plot:
        write_plot(args.plot, results, providers)
        print(f"wrote {args.plot}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
