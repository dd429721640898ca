#!/usr/bin/env python
"""Launch configurations of the Triton kernels, timed kernel by kernel on a GPU.

For each case (score kind and channel width, at arxiv size, H=8) and each
``(BLOCK_E, num_warps)``, one training step of the op (forward, backward) runs
under ``torch.profiler``; the device time of each of our kernels (forward,
backward destination pass, backward source pass) is printed, so that every
kernel's default launch configuration (``fused_attention.launch_config``) is
chosen from measurements, not guessed.  ``--host`` also profiles the Python
side of a ``GATConv`` training step (``cProfile``; the GPU waits for it when
the step's wall time exceeds its kernels' time) and reports any host-device
synchronisation in the step (``torch.cuda.set_sync_debug_mode``).

    python benchmarks/tune_gpu.py --host > tune.txt
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench_gpu import HEADS, SIZES, Timer, make_graph, op_inputs, ours_op, step  # noqa: E402

CASES = (("dot", 16), ("dot", 8), ("gat", 8), ("gatv2", 8))
BLOCK_E = (2, 4, 8, 16)
WARPS = (1, 2, 4, 8)


def op_step(kind: str, channels: int, n: int, graph, device):
    """A closure running one forward+backward of the ``kind`` op with the Triton backend."""
    inputs = op_inputs(kind, n, channels, device, 0)
    grad_out = torch.randn(n, HEADS, channels, device=device)

    def run():
        for t in inputs.values():
            t.grad = None
        ours_op(kind, inputs, graph).backward(grad_out)
    return run


def kernel_times(fn, timer: Timer, steps: int = 5) -> dict[str, float]:
    """Mean device milliseconds per step of each CUDA kernel that ``fn`` launches."""
    fn()
    timer.sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        timer.sync()
    events = prof.key_averages()
    if not events:
        return {}
    key = "device_time_total" if hasattr(events[0], "device_time_total") else "cuda_time_total"
    return {e.key: getattr(e, key) / steps / 1e3 for e in events if getattr(e, key) > 0}


def patched_config(original, config):
    """``launch_config`` with ``config`` forced: ``(BLOCK_E, num_warps)`` on both
    sides, or ``{"dst": BLOCK_E, "src": BLOCK_E}`` with the rule's warps."""
    def patched(*args):
        if isinstance(config, dict):
            side = args[5] if len(args) > 5 else "dst"
            return original(*args[:6], block_e=config[side])
        chosen = original(*args)
        chosen.update(BLOCK_E=config[0], num_warps=config[1])
        return chosen
    return patched


def sweep(device, timer: Timer, graph, n: int, cases, configs) -> None:
    from pyg_attn.ops.triton import fused_attention

    original = fused_attention.launch_config
    ours = ("fwd", "bwd_dst", "bwd_src", "merge")
    for kind, channels in cases:
        print(f"\n=== {kind}, C={channels}: kernel ms per step (default config first)",
              flush=True)
        run_step = op_step(kind, channels, n, graph, device)
        for config in [None] + configs:
            if config is not None:
                fused_attention.launch_config = patched_config(original, config)
            try:
                times = kernel_times(run_step, timer)
                wall, _ = timer.median_ms(run_step)
            except Exception as exc:  # noqa: BLE001 - report and go on
                print(f"{config}: failed: {exc!r}"[:300], flush=True)
                continue
            finally:
                fused_attention.launch_config = original
            mine = {k: v for k, v in times.items()
                    if any(f"_fused_attention_{name}_kernel" in k for name in ours)}
            label = ("default" if config is None else str(config) if isinstance(config, dict)
                     else f"BLOCK_E={config[0]:2d} warps={config[1]}")
            cells = " ".join(f"{k.split('_fused_attention_')[-1].replace('_kernel', '')}="
                             f"{v:.3f}" for k, v in sorted(mine.items()))
            print(f"{label}: {cells} | all kernels {sum(times.values()):.3f} | wall {wall:.3f}",
                  flush=True)


def enqueue_ms(fn, timer: Timer, steps: int = 20) -> tuple[float, float]:
    """``(host, wall)`` milliseconds per step over ``steps`` back-to-back steps:
    the time to issue them (the host's share) and the time until the GPU is done."""
    timer.sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    issued = time.perf_counter()
    timer.sync()
    done = time.perf_counter()
    return 1e3 * (issued - start) / steps, 1e3 * (done - start) / steps


def host_profile(device, timer: Timer, edge_index, n: int, feats: int) -> None:
    import torch_geometric.nn as pyg_nn

    import pyg_attn.nn as our_nn

    x = torch.randn(n, feats, device=device)
    steps = {}
    for provider, nn in (("ours", our_nn), ("pyg", pyg_nn)):
        torch.manual_seed(0)
        layer = nn.GATConv(feats, 8, heads=HEADS).to(device)
        layer_step = step(lambda layer=layer: layer(x, edge_index), list(layer.parameters()))
        steps[provider] = layer_step
        wall, _ = timer.median_ms(layer_step)
        times = kernel_times(layer_step, timer)
        host, issued_wall = enqueue_ms(layer_step, timer)
        print(f"\n=== {provider} GATConv({feats}, 8, heads=8) step: wall {wall:.3f} ms, kernels "
              f"{sum(times.values()):.3f} ms; 20 steps back to back: host {host:.3f} ms, "
              f"wall {issued_wall:.3f} ms per step", flush=True)
    layer_step = steps["ours"]
    torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer_step()
    torch.cuda.set_sync_debug_mode(0)
    print(f"synchronising calls in one step: {len(caught)}")
    for w in caught[:5]:
        print(f"  {w.filename}:{w.lineno}: {str(w.message)[:200]}")
    timer.sync()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        layer_step()
    timer.sync()
    prof.disable()
    stats = pstats.Stats(prof)
    print(f"host seconds for 20 steps (under cProfile): {stats.total_tt:.3f}")
    stats.sort_stats("tottime").print_stats(25)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", action="store_true", help="also profile the host side")
    p.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["arxiv"])
    p.add_argument("--sweep", choices=("grid", "block-e", "none"), default="grid",
                   help="grid: every (BLOCK_E, num_warps) on both sides; block-e: "
                        "(dst, src) BLOCK_E pairs with the default rule's warps")
    args = p.parse_args(argv)
    device = torch.device("cuda")
    timer = Timer(device, 0.2, 30)
    from pyg_attn.ops import prepare

    for size in args.sizes:
        n, e, feats = SIZES[size]
        edge_index = make_graph(n, e, 0, 0.7, device)
        print(f"\n##### {size}: {n} nodes, {e} edges", flush=True)
        if args.host:
            host_profile(device, timer, edge_index, n, feats)
        graph = prepare(edge_index, num_nodes=n)
        if args.sweep == "grid":
            sweep(device, timer, graph, n, CASES, [(b, w) for b in BLOCK_E for w in WARPS])
        elif args.sweep == "block-e":
            sweep(device, timer, graph, n, (("dot", 16), ("gat", 8)),
                  [{"dst": d, "src": s} for d, s in ((4, 2), (8, 2), (8, 4), (16, 4), (16, 8))])
        del graph, edge_index
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
