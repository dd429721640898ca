"""Compiles every kernel launch of the Triton backend for a GPU that is not here.

Run as a script (``python -m tests.triton.compile_for_gpu``) in a process
*without* ``TRITON_INTERPRET``: the launchers run on small CPU tensors with each
kernel replaced by a recorder, and every recorded launch (argument types and
constexpr values exactly as the launcher passes them) is compiled by Triton's
NVIDIA backend for ``sm_90`` down to a cubin (ptxas included).  This catches
what the interpreter accepts but the compiler rejects (e.g. non-constexpr
globals, shape or type mismatches in branches) without a GPU.  Prints one line
per compiled kernel and exits non-zero on the first failure.
"""
from __future__ import annotations

import itertools
import sys
import time

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import mangle_type

from pyg_attn.ops import prepare
from pyg_attn.ops.spec import TRITON_OP
from pyg_attn.ops.triton import fused_attention
from pyg_attn.ops.triton.work import triton_graph

from ..graphs import random_graph

TARGET = GPUTarget("cuda", 90, 32)
KERNELS = tuple(f"_fused_attention_{name}_kernel" for name in ("fwd", "merge", "alpha", "bwd_dst",
                                                               "bwd_src"))


class Recorder:
    """Stands in for ``kernel[grid](...)`` and records the call."""

    def __init__(self, kernel, launches: list):
        self.kernel, self.launches = kernel, launches
        self.arg_names = kernel.arg_names

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((self.kernel, args, kwargs))


def record(kind: int, dtype: torch.dtype) -> list:
    """Launches of one forward and one backward with every optional input."""
    launches: list = []
    originals = {name: getattr(fused_attention, name) for name in KERNELS}
    for name, kernel in originals.items():
        setattr(fused_attention, name, Recorder(kernel, launches))
    try:
        run_op(kind, dtype)
    finally:
        for name, kernel in originals.items():
            setattr(fused_attention, name, kernel)
    return launches


def run_op(kind: int, dtype: torch.dtype) -> None:
    """The Triton op's forward and backward on a small graph (kernels stubbed)."""
    edge_index = random_graph(12, 12, 40, seed=0, hub=1, hub_degree=10)
    tensors = TRITON_OP.graph_tensors(triton_graph(prepare(edge_index, 12), 4))
    heads, dim = 2, (1 if kind == 1 else 4)
    dim = 0 if kind == 3 else dim
    e = edge_index.size(1)
    x = lambda *shape: torch.randn(*shape).to(dtype)  # noqa: E731
    dst, src = x(12, heads, dim), x(12, heads, dim)
    value = x(12, heads, 0 if kind == 3 else 4)
    features = (dst, src, value, x(heads, dim) if kind == 2 else None,
                x(e, heads) if kind in (0, 1, 3) else None,
                x(e, heads, dim) if kind in (0, 2) else None, x(e, heads, 4) if kind == 0 else None)
    mask = torch.rand(e) > 0.2
    args = (kind, *tensors, *features, mask, torch.tensor(7), 0.5, 0.2, 0.1)
    out, stats, alpha = fused_attention.triton_fused_attention(*args, True)
    fused_attention.triton_fused_attention_backward(
        *args, out, stats, torch.randn_like(out), torch.randn_like(alpha), alpha, [True] * 7)


def compile_launch(kernel, args: tuple, kwargs: dict):
    names = [p.name for p in kernel.params]
    values = dict(zip(names, args), **kwargs)
    constexpr = {p.name for p in kernel.params if p.is_constexpr}
    signature = {n: "constexpr" if n in constexpr else mangle_type(values[n]) for n in names}
    constants = {(names.index(n),): values[n] for n in constexpr}
    # Pointers and multiples of 16 carry the divisibility hint a real launch gives them.
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in names
             if n not in constexpr and (isinstance(values[n], torch.Tensor) or (
                 type(values[n]) is int and values[n] % 16 == 0))}
    options = {"num_warps": kwargs["num_warps"]} if "num_warps" in kwargs else {}
    return triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constants,
                                    attrs=attrs), target=TARGET, options=options)


def main() -> int:
    seen = set()
    for kind, dtype in itertools.chain(itertools.product(range(4), [torch.float32]),
                                       [(0, torch.bfloat16), (2, torch.float16),
                                        (1, torch.float64)]):
        for kernel, args, kwargs in record(kind, dtype):
            key = (kernel.__name__, tuple(mangle_type(a) for a in args),
                   tuple(sorted((k, str(v)) for k, v in kwargs.items())))
            if key in seen:
                continue
            seen.add(key)
            start = time.perf_counter()
            compiled = compile_launch(kernel, args, kwargs)
            print(f"{kernel.__name__} kind={kind} {dtype}: {len(compiled.asm['cubin'])} B cubin "
                  f"in {time.perf_counter() - start:.1f} s", flush=True)
    print(f"compiled {len(seen)} kernels for {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
