"""What the CPU benchmark scripts share: graphs, timing, memory, worker processes, reports.

* **graphs**: :data:`SIZES` and :func:`make_graph`, the power-law in-degree graphs
  of ``bench_ops.py``, ``bench_layers.py``, ``bench_workloads.py`` and
  ``products_memory.py``;
* **timing and memory**: :func:`timed_region` (median of a timing loop, the peak
  extra memory of the region by :class:`PeakMemory`, the CPU other processes used
  meanwhile by :class:`ForeignLoad`);
* **worker processes**: one process per measurement, forked from a preloaded server
  (:func:`serve_main`, :class:`ForkRunner`) or a fresh interpreter
  (:func:`worker_main`, :class:`ExecRunner`), each resolving MKL's VML dispatch
  first (:func:`resolve_vml_dispatch`);
* **reports**: the options every script takes (:func:`add_common_args`), the
  machine and versions (:func:`versions`, :func:`git_state`,
  :func:`load_average`), the ratios to PyG (:func:`add_ratios`), the table
  (:func:`print_table`) and the CSV (:func:`write_csv`).

Importing this module puts the repository root on ``sys.path``, so every script
runs from anywhere without ``PYTHONPATH``.
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
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without PYTHONPATH
    sys.path.insert(0, str(ROOT))

SIZES = {  # name: (num_nodes, num_edges)
    "cora": (2_708, 10_556),
    "50k": (50_000, 500_000),
    "arxiv": (169_343, 1_166_243),
}
NOISY_PCT = 10.0  # flag rows timed while other processes used more of the machine

#: A measurement: a spec dict in, a JSON-ready result dict out (run in a worker).
MeasureFn = Callable[[dict], dict]


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


def provider_backend(provider: str, device) -> str:
    """The backend a provider's rows ran on: ``torch_geometric`` for PyG's paths
    (``pyg``, ``pyg-csr``, ``pyg-sparse``), ``reference``, or what pyg_attn's
    default (``pyg_attn``) or Triton (``pyg_attn-triton``) backend resolves to."""
    if provider == "reference":
        return "reference"
    if not provider.startswith("pyg_attn"):
        return "torch_geometric"
    from pyg_attn.ops import select_backend
    return select_backend("triton" if provider == "pyg_attn-triton" else None, device)


# ============================================================================ memory
def proc_status_kb(field: str) -> Optional[int]:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``); ``None`` if unreadable."""
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
        self.before = proc_status_kb("VmRSS") or 0

    def stop_mb(self) -> float:
        import torch

        if self.method == "cuda_max_memory_allocated":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self.before) / 2**20
        if self.method == "proc_VmHWM":
            peak = proc_status_kb("VmHWM") or 0
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


def tensor_bytes(obj) -> int:
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


# ============================================================================ timing
def device_sync(device) -> Callable[[], None]:
    """A no-argument call that waits for ``device`` (nothing to wait for on CPU)."""
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_loop(fn, mode, inputs, grad_out, warmup, repeats, min_repeats, budget, sync,
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
    times = time_loop(fn, mode, inputs, grad_out, spec["warmup"], spec["repeats"],
                      spec["min_repeats"], spec["budget"], sync, spec.get("warmup_s", 0.0))
    other_cpu_pct = foreign.stop_pct()
    peak_mb = meter.stop_mb()
    return {"ms": 1e3 * statistics.median(times), "ms_min": 1e3 * min(times),
            "timed_repeats": len(times), "peak_mb": peak_mb, "mem_method": meter.method,
            "other_cpu_pct": other_cpu_pct}


# ============================================================================ machine
def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else what ``platform`` says, else ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def versions() -> dict:
    """Versions of torch, torch_geometric and torch_scatter (``None``: not installed)."""
    import torch
    import torch_geometric

    out = {"torch": torch.__version__, "torch_geometric": torch_geometric.__version__}
    try:
        import torch_scatter
        out["torch_scatter"] = torch_scatter.__version__
    except Exception:  # noqa: BLE001
        out["torch_scatter"] = None
    return out


def git_state() -> str:
    """The short commit, noting uncommitted changes under ``pyg_attn/``; ``?`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pyg_attn"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10).stdout.strip()
        return f"{head}{' (pyg_attn/ has uncommitted changes)' if dirty else ''}" if head else "?"
    except Exception:  # noqa: BLE001
        return "?"


def load_average() -> str:
    """The 1/5/15-minute load averages as ``a/b/c`` (``?`` where unknown)."""
    try:
        return "{:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())
    except OSError:
        return "?"


# ============================================================================ reports
def environment_rows(env: dict, command: str) -> list:
    """The lines of a markdown table of ``env`` (name, value) and the ``command``
    that made a report, which opens every result file."""
    return ["| | |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in env.items()],
            f"| command | `{command}` |"]


def publish(text: str, out: str | None) -> None:
    """Prints a markdown report and, with ``out``, writes it to ``out`` + ``.md``."""
    print(text)
    if out:
        path = Path(out).with_suffix(".md")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ============================================================================ workers
def preload() -> None:
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


def measure_safely(spec: dict, measure_fn: MeasureFn) -> dict:
    """``measure_fn(spec)`` after :func:`resolve_vml_dispatch`; an exception becomes
    the spec with an ``error`` field (the traceback), reported as a failed row."""
    try:
        resolve_vml_dispatch()  # before any multi-threaded op of the measurement
        return measure_fn(spec)
    except BaseException:  # noqa: BLE001 - reported to the driver as a failed row
        return {**spec, "error": traceback.format_exc()}


def worker_main(spec_json: str, measure_fn: MeasureFn) -> int:
    """``script --worker SPEC``: one measurement, its JSON result on stdout."""
    channel = _protocol_stdout()
    result = measure_safely(json.loads(spec_json), measure_fn)
    channel.write(json.dumps(result) + "\n")
    channel.flush()
    return 0


def serve_main(measure_fn: MeasureFn, preload_fn: Callable[[], None] = preload) -> int:
    """``script --serve``: a fork server that reads one JSON spec per line on stdin,
    forks a fresh process per spec (after ``preload_fn`` ran once in the server), and
    writes that process's JSON result as one line on stdout."""
    channel = _protocol_stdout()
    preload_fn()
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
                data = json.dumps(measure_safely(spec, measure_fn)).encode()
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


class ForkRunner:
    """Drives ``script --serve`` (:func:`serve_main`): one forked process per spec."""

    def __init__(self, env, script):
        self.proc = subprocess.Popen([sys.executable, str(Path(script).resolve()), "--serve"],
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
    """Runs ``script --worker SPEC`` (:func:`worker_main`) per measurement."""

    def __init__(self, env, script):
        self.env = env
        self.script = str(Path(script).resolve())

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


def make_runner(args: argparse.Namespace, script) -> ForkRunner | ExecRunner:
    """The runner ``--isolation`` asks for (``auto``: fork on CPU, exec on CUDA), its
    workers running ``script`` with the repository root on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    isolation = args.isolation
    if isolation == "auto":
        isolation = "exec" if args.device.startswith("cuda") else "fork"
    return (ForkRunner if isolation == "fork" else ExecRunner)(env, script)


# ============================================================================ options
def add_common_args(p: argparse.ArgumentParser) -> None:
    """Options of bench_ops.py and bench_layers.py: sizes of the model, timing, isolation."""
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


def spec_of(args: argparse.Namespace, **fields) -> dict:
    """A measurement spec: ``fields`` plus the shared options' values."""
    return {**fields, "heads": args.heads, "threads": args.threads, "device": args.device,
            "seed": args.seed, "zipf": args.zipf, "repeats": args.repeats,
            "min_repeats": args.min_repeats, "warmup": args.warmup,
            "warmup_s": args.warmup_seconds, "budget": args.time_budget}


# ============================================================================ reports
def fmt(x, spec="{:.2f}") -> str:
    """``x`` formatted by ``spec``, ``-`` for ``None``."""
    return "-" if x is None else spec.format(x)


def run_all(runner, specs: list, tag: Callable[[dict], str]) -> list:
    """Runs every spec on ``runner`` (then closes it), printing a progress line per
    row on stderr (``tag(spec)`` names the row); returns the results in order."""
    results = []
    try:
        for k, spec in enumerate(specs, 1):
            r = runner.run(spec)
            results.append(r)
            name = f"[{k}/{len(specs)}] {tag(spec)}"
            if "error" in r:
                print(f"{name}: ERROR {r['error'].strip().splitlines()[-1]}", file=sys.stderr)
            else:
                print(f"{name}: {r['ms']:.3f} ms, peak {r['peak_mb']:.1f} MB "
                      f"({r['timed_repeats']} repeats, other processes "
                      f"{fmt(r.get('other_cpu_pct'), '{:.0f}')}% CPU)", file=sys.stderr,
                      flush=True)
    finally:
        runner.close()
    return results


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
            print(line(head + (fmt(r["ms"], "{:.3f}"), fmt(r["peak_mb"], "{:.1f}"),
                               fmt(r["speedup_vs_pyg"]), fmt(r["mem_ratio_vs_pyg"], "{:.3f}"),
                               fmt(r.get("speedup_vs_best")),
                               fmt(r.get("mem_vs_best"), "{:.3f}"))))
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


def print_noisy(rows: list, kind: str) -> None:
    """Names the rows timed while other processes used more than :data:`NOISY_PCT` %
    of the CPUs, else the most they used."""
    noisy = [r for r in rows if (r.get("other_cpu_pct") or 0.0) > NOISY_PCT]
    if noisy:
        print(f"NOTE: other processes used > {NOISY_PCT:g}% of the CPUs while these rows were "
              "timed (their times are inflated/noisy): "
              + ", ".join(f"{r['size']}/{r[kind]}/C={r['channels']}/{r['mode']}/"
                          f"{r['provider']} ({r['other_cpu_pct']:.0f}%)" for r in noisy))
    else:
        worst = max((r.get("other_cpu_pct") or 0.0 for r in rows), default=0.0)
        print(f"CPU use by other processes during timed regions: at most {worst:.0f}% "
              "of the machine (measured for regions >= 0.5 s)")


def print_errors(results: list, kind: str) -> None:
    """The traceback of every failed row, on stderr."""
    for r in results:
        if "error" in r:
            print(f"ERROR in {r['size']}/{r[kind]}/C={r['channels']}/{r['mode']}/"
                  f"{r['provider']}:\n{r['error']}", file=sys.stderr)


#: The CSV columns of a measured row after the ones naming it (size, score or layer, C,
#: mode, provider): backend, times, memory, ratios, the output check, the machine, error.
RESULT_FIELDS = ("backend", "ms", "ms_min", "timed_repeats", "peak_mb", "peak_mb_region",
                 "prepare_mb", "speedup_vs_pyg", "mem_ratio_vs_pyg", "speedup_vs_best",
                 "mem_vs_best", "mem_method", "check_max_abs_err", "other_cpu_pct", "threads",
                 "device", "error")


def write_csv(path, results, fields) -> None:
    """The rows' ``fields`` as CSV (a failed row keeps its error's last line)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in results:
            row = dict(r)
            if "error" in row:
                row["error"] = row["error"].strip().splitlines()[-1]
            w.writerow(row)
