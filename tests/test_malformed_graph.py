"""Malformed graphs and kernel arguments fail with clear errors, never out-of-bounds access.

Hand-built :class:`PreparedGraph` objects are validated field by field
(``ValueError`` naming the field), and the C++ op checks every structural
precondition itself (``RuntimeError`` naming the argument), so that direct calls
of ``torch.ops.pyg_attn.fused_attention`` with inconsistent arguments cannot
read or write out of bounds.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from pyg_attn.ops import PreparedGraph, prepare
from pyg_attn.ops.cpu import load_extension
from pyg_attn.ops.spec import CPU_OP

from .graphs import random_graph

N_SRC, N_DST, E = 9, 7, 30


@pytest.fixture
def fields() -> dict:
    """The constructor arguments of a valid (bipartite) graph."""
    graph = prepare(random_graph(N_SRC, N_DST, E, seed=3), (N_SRC, N_DST))
    return {f.name: getattr(graph, f.name) for f in dataclasses.fields(graph) if f.init}


def _with(fields: dict, **changes) -> dict:
    return {**fields, **changes}


def _bump(t: torch.Tensor, position: int, value: int) -> torch.Tensor:
    t = t.clone()
    t[position] = value
    return t


def _swap(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
    t = t.clone()
    t[[a, b]] = t[[b, a]]
    return t


def test_hand_built_valid_graph_is_accepted(fields):
    graph = PreparedGraph(**fields)
    assert graph.num_edges == E
    assert graph.to("cpu") is graph
    assert torch.equal(graph.edge_index, prepare(graph.edge_index, (N_SRC, N_DST)).edge_index)


BAD_FIELDS = {
    "rowptr too short": (lambda f: {"rowptr": f["rowptr"][:-1]}, "rowptr"),
    "colptr too long": (lambda f: {"colptr": torch.cat([f["colptr"], f["colptr"][-1:]])}, "colptr"),
    "col too short": (lambda f: {"col": f["col"][:-1]}, "perm"),
    "perm too short": (lambda f: {"perm": f["perm"][:-1]}, "perm"),
    "csc_row too long": (lambda f: {"csc_row": torch.cat([f["csc_row"], f["csc_row"][:1]])},
                         "csc_row"),
    "csc_edge too short": (lambda f: {"csc_edge": f["csc_edge"][1:]}, "csc_edge"),
    "rowptr not from 0": (lambda f: {"rowptr": f["rowptr"] + 1}, "rowptr"),
    "rowptr not ending at E": (lambda f: {"rowptr": _bump(f["rowptr"], -1, E - 1)}, "rowptr"),
    "rowptr not monotone": (lambda f: {"rowptr": _bump(f["rowptr"], 1, E)}, "rowptr"),
    "colptr not monotone": (lambda f: {"colptr": _bump(f["colptr"], 2, -5)}, "colptr"),
    "col out of range": (lambda f: {"col": _bump(f["col"], 4, N_SRC)}, "col"),
    "col negative": (lambda f: {"col": _bump(f["col"], 0, -1)}, "col"),
    "perm out of range": (lambda f: {"perm": _bump(f["perm"], 3, E)}, "perm"),
    "perm negative": (lambda f: {"perm": _bump(f["perm"], 3, -2)}, "perm"),
    "perm repeats": (lambda f: {"perm": _bump(f["perm"], 0, int(f["perm"][1]))}, "perm"),
    "csc_row out of range": (lambda f: {"csc_row": _bump(f["csc_row"], 5, N_DST)}, "csc_row"),
    "csc_row negative": (lambda f: {"csc_row": _bump(f["csc_row"], 5, -1)}, "csc_row"),
    "csc_edge out of range": (lambda f: {"csc_edge": _bump(f["csc_edge"], 2, E)}, "csc_edge"),
    "csc_edge repeats": (lambda f: {"csc_edge": _bump(f["csc_edge"], 0, int(f["csc_edge"][1]))},
                         "csc_edge"),
    "csc_edge in other sources' slots": (lambda f: {"csc_edge": _swap(f["csc_edge"], 0, E - 1)},
                                         "colptr"),
    "csc_row wrong destination": (lambda f: {"csc_row": (f["csc_row"] + 1) % N_DST}, "csc_row"),
    "col float": (lambda f: {"col": f["col"].float()}, "col"),
    "rowptr int32": (lambda f: {"rowptr": f["rowptr"].int()}, "rowptr"),
    "perm int16": (lambda f: {"perm": f["perm"].short()}, "perm"),
    "csc_row not a tensor": (lambda f: {"csc_row": f["csc_row"].tolist()}, "csc_row"),
    "col 2-D": (lambda f: {"col": f["col"].view(1, -1)}, "col"),
    "perm not contiguous": (lambda f: {"perm": torch.stack([f["perm"], f["perm"]], 1)[:, 0]},
                            "perm"),
    "num_src negative": (lambda f: {"num_src": -1}, "num_src"),
    "num_dst not an int": (lambda f: {"num_dst": float(N_DST)}, "num_dst"),
    "num_dst too small": (lambda f: {"num_dst": N_DST - 1}, "rowptr"),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_inconsistent_graph_raises_value_error_naming_the_field(fields, case):
    change, name = BAD_FIELDS[case]
    with pytest.raises(ValueError, match=f"'{name}'"):
        PreparedGraph(**_with(fields, **change(fields)))


def test_extras_cannot_be_passed(fields):
    with pytest.raises(TypeError):
        PreparedGraph(**fields, extras={"csc_slot": torch.zeros(E, dtype=torch.int32)})


def test_from_csr_equals_prepare():
    edge_index = random_graph(N_SRC, N_DST, E, seed=4)
    graph = prepare(edge_index, (N_SRC, N_DST))
    built = PreparedGraph.from_csr(graph.rowptr, graph.col, N_SRC, perm=graph.perm)
    for f in ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge"):
        assert torch.equal(getattr(built, f), getattr(graph, f)), f
    assert torch.equal(built.edge_index, edge_index)


def test_from_csr_numbers_edges_in_csr_order_by_default():
    graph = PreparedGraph.from_csr(torch.tensor([0, 1, 3]), torch.tensor([2, 0, 2]), num_src=3)
    assert graph.edge_index.tolist() == [[2, 0, 2], [0, 1, 1]]
    assert graph.csc_row.tolist() == [1, 0, 1]


@pytest.mark.parametrize("rowptr, col, perm, name", [
    ([0, 2, 1, 3], [0, 1, 2], None, "rowptr"),
    ([1, 2, 3], [0, 1], None, "rowptr"),
    ([0, 1, 2], [0, 1, 2], None, "rowptr"),
    ([0, 1, 3], [0, 3, 1], None, "col"),
    ([0, 1, 3], [0, -1, 1], None, "col"),
    ([0, 1, 3], [0, 1, 2], [0, 1], "perm"),
    ([0, 1, 3], [0, 1, 2], [0, 1, 3], "perm"),
    ([0, 1, 3], [0, 1, 2], [0, 0, 1], "perm"),
    ([], [], None, "rowptr"),
])
def test_from_csr_rejects_bad_csr(rowptr, col, perm, name):
    perm = None if perm is None else torch.tensor(perm)
    with pytest.raises(ValueError, match=f"'{name}'"):
        PreparedGraph.from_csr(torch.tensor(rowptr, dtype=torch.long),
                               torch.tensor(col, dtype=torch.long), 3, perm=perm)


def test_from_csr_rejects_float_indices():
    with pytest.raises(ValueError, match="'col'"):
        PreparedGraph.from_csr(torch.tensor([0, 1]), torch.tensor([0.0]), 1)


# ------------------------------------------------------------------ the C++ op

needs_kernel = pytest.mark.skipif(load_extension() is None, reason="fused CPU kernel unavailable")
H, C = 2, 8


def _op_args(kind: str = "dot") -> dict:
    """Valid arguments of ``torch.ops.pyg_attn.fused_attention`` (by name)."""
    from pyg_attn.ops.score_kinds import KIND_IDS

    graph = prepare(random_graph(N_SRC, N_DST, E, seed=5), (N_SRC, N_DST))
    dim = 1 if kind == "gat" else C
    return dict(
        kind=KIND_IDS[kind], rowptr=graph.rowptr, col=graph.col, perm=graph.perm,
        colptr=graph.colptr, csc_row=graph.csc_row, csc_edge=graph.csc_edge,
        dst=torch.randn(N_DST, H, dim), src=torch.randn(N_SRC, H, dim),
        value=torch.randn(N_SRC, H, C), att=torch.randn(H, C) if kind == "gatv2" else None,
        edge_score=None, edge_feat=None, edge_value=None, edge_mask=None, seed=None,
        scale=0.5, negative_slope=0.2, dropout=0.0, need_alpha=True)


def _forward(args: dict):
    import pyg_attn.ops.library  # noqa: F401  (registers the op)

    return torch.ops.pyg_attn.fused_attention(*args.values())


def _backward_args(args: dict, out: torch.Tensor, lse: torch.Tensor,
                   alpha: torch.Tensor) -> dict:
    """The backward's arguments (by name) after a forward on ``args``."""
    return dict(args, out=out, lse=lse, grad_out=torch.ones_like(out),
                grad_alpha=torch.ones(args["col"].numel(), H), alpha=alpha, needs=[True] * 7)


def _backward(backward: dict):
    return torch.ops.pyg_attn.fused_attention_backward(
        *(backward[arg.name] for arg in CPU_OP.backward_args))


BAD_OP_ARGS = [  # (argument named in the error, change of the valid arguments)
    ("kind", lambda a: {"kind": 7}),
    ("rowptr", lambda a: {"rowptr": _bump(a["rowptr"], 2, E + 5)}),
    ("rowptr", lambda a: {"rowptr": _bump(a["rowptr"], 0, 1)}),
    ("rowptr", lambda a: {"rowptr": a["rowptr"].int()}),
    ("col", lambda a: {"rowptr": _bump(a["rowptr"], -1, E - 1)}),
    ("col", lambda a: {"col": _bump(a["col"], 3, N_SRC)}),
    ("col", lambda a: {"col": _bump(a["col"], 3, -4)}),
    ("col", lambda a: {"col": a["col"][:-1]}),
    ("perm", lambda a: {"perm": _bump(a["perm"], 0, E)}),
    ("perm", lambda a: {"perm": a["perm"][1:]}),
    ("dst", lambda a: {"dst": torch.randn(N_DST + 1, H, C)}),
    ("src", lambda a: {"src": torch.randn(N_SRC, H + 1, C)}),
    ("src", lambda a: {"src": torch.randn(N_SRC, H, 2 * C)[..., ::2]}),
    ("src", lambda a: {"src": torch.randn(N_SRC, H, C, dtype=torch.float64)}),
    ("value", lambda a: {"value": torch.randn(N_SRC, H)}),
    ("value", lambda a: {"value": torch.randn(N_SRC, C, H).transpose(1, 2)}),  # rows strided
    ("dst", lambda a: {"dst": torch.randn(N_DST, H, 2 * C)[..., ::2]}),
    ("edge_score", lambda a: {"edge_score": torch.randn(E + 1, H)}),
    ("edge_feat", lambda a: {"edge_feat": torch.randn(E, H, C + 1)}),
    ("edge_value", lambda a: {"edge_value": torch.randn(E - 1, H, C)}),
    ("edge_mask", lambda a: {"edge_mask": torch.ones(E, dtype=torch.uint8)}),
    ("dropout", lambda a: {"dropout": 1.5}),
    ("seed", lambda a: {"dropout": 0.5}),
    ("seed", lambda a: {"dropout": 0.5, "seed": torch.tensor([3])}),
    ("seed", lambda a: {"dropout": 0.5, "seed": torch.tensor(3, dtype=torch.int32)}),
]


@needs_kernel
@pytest.mark.parametrize("name, change", BAD_OP_ARGS)
def test_op_rejects_inconsistent_arguments(name, change):
    args = _op_args()
    args.update(change(args))
    with pytest.raises(RuntimeError, match=f"'{name}'"):
        _forward(args)


@needs_kernel
@pytest.mark.parametrize("kind, change, name", [
    ("gatv2", {"att": torch.randn(H + 1, C)}, "att"),
    ("gat", {"dst": torch.randn(N_DST, H, C), "src": torch.randn(N_SRC, H, C)}, "src"),
])
def test_op_rejects_kind_specific_shapes(kind, change, name):
    args = _op_args(kind)
    args.update(change)
    with pytest.raises(RuntimeError, match=name):
        _forward(args)


@needs_kernel
@pytest.mark.parametrize("name, change", [
    ("colptr", lambda a: _bump(a["colptr"], 1, E + 1)),
    ("colptr", lambda a: a["colptr"][:-1]),
    ("csc_row", lambda a: _bump(a["csc_row"], 0, N_DST)),
    ("csc_edge", lambda a: _bump(a["csc_edge"], 0, -1)),
    ("csc_edge", lambda a: a["csc_edge"].long()),
    ("out", lambda a: a["out"][:-1]),
    ("lse", lambda a: a["lse"][..., :1].contiguous()),
    ("grad_out", lambda a: a["grad_out"].double()),
    ("grad_alpha", lambda a: torch.ones(E, H + 1)),
    ("alpha", lambda a: torch.ones(E + 1, H)),
    ("alpha", lambda a: a["alpha"].double()),
])
def test_backward_rejects_inconsistent_arguments(name, change):
    args = _op_args()
    out, lse, alpha = _forward(args)
    backward = _backward_args(args, out, lse, alpha)
    backward[name] = change(backward)
    with pytest.raises(RuntimeError, match=f"'{name}'"):
        _backward(backward)


@needs_kernel
def test_op_accepts_the_valid_arguments():
    out, lse, alpha = _forward(_op_args())
    assert out.shape == (N_DST, H, C) and lse.shape == (N_DST, H, 2) and alpha.shape == (E, H)


GRAPH_ARGS = CPU_OP.graph


@needs_kernel
@pytest.mark.parametrize("seed", range(40))
def test_op_survives_random_corruption(seed):
    """A random entry of a random graph array set to a random value: forward and
    backward either run or raise, never touch memory out of bounds (checked for
    real under AddressSanitizer, tests/asan/run_asan.sh)."""
    rng = torch.Generator().manual_seed(seed)
    args = _op_args(("dot", "gat", "gatv2")[seed % 3])
    name = GRAPH_ARGS[int(torch.randint(len(GRAPH_ARGS), (), generator=rng))]
    position = int(torch.randint(args[name].numel(), (), generator=rng))
    args[name] = _bump(args[name], position, int(torch.randint(-3, E + 4, (), generator=rng)))
    try:
        out, lse, alpha = _forward(args)
        _backward(_backward_args(args, out, lse, alpha))
    except (RuntimeError, ValueError) as exc:
        assert f"'{name}'" in str(exc) or "'col'" in str(exc) or "'perm'" in str(exc)


_ISA_SCRIPT = """
import torch
from pyg_attn.ops import gat_attention, gatv2_attention, graph_attention, prepare
from tests.graphs import random_graph
torch.manual_seed(0)
graph = prepare(random_graph(40, 30, 300, seed=6), (40, 30))
q = torch.randn(30, 8, 16, requires_grad=True)
k, v = (torch.randn(40, 8, 16, requires_grad=True) for _ in range(2))
out = graph_attention(q, k, v, graph, backend="cpu")
out.pow(2).sum().backward()
results = [out.detach(), q.grad, k.grad, v.grad]
# Attention dropout (the keep bits eight heads at a time, then a scalar tail).
for heads in (8, 12, 1):
    a_src, value = torch.randn(40, heads, requires_grad=True), torch.randn(40, heads, 4)
    a_dst = torch.randn(30, heads)
    value.requires_grad_()
    out = gat_attention(a_src, a_dst, value, graph, dropout=0.5, training=True, backend="cpu")
    out.pow(2).sum().backward()
    results += [out.detach(), a_src.grad, value.grad]
# GATv2's scores (eight heads per tree), with and without edge features.
for edge_feat in (None, torch.randn(300, 8, 16)):
    x_src, x_dst = torch.randn(40, 8, 16, requires_grad=True), torch.randn(30, 8, 16)
    att = torch.randn(8, 16, requires_grad=True)
    out = gatv2_attention(x_src, x_dst, att, graph, edge_feat=edge_feat, backend="cpu")
    out.pow(2).sum().backward()
    results += [out.detach(), x_src.grad, att.grad]
torch.save(results, {path!r})
"""


@needs_kernel
def test_avx2_and_baseline_kernel_copies_agree(tmp_path):
    """The kernel copies for AVX2 and for the baseline target (PYG_ATTN_NO_AVX2=1;
    without AVX2, or in a native build, both runs use the same copy) give the
    same results, attention dropout's kept edges included."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    results = []
    for no_avx2 in ("0", "1"):
        path = tmp_path / f"no_avx2_{no_avx2}.pt"
        env = dict(os.environ, PYG_ATTN_NO_AVX2=no_avx2)
        subprocess.run([sys.executable, "-c", _ISA_SCRIPT.format(path=str(path))], env=env,
                       check=True, cwd=Path(__file__).resolve().parents[1])
        results.append(torch.load(path))
    # The AVX2 copy sums eight-lane dot products in another order: float32 rounding,
    # relative to each result's scale (gradients cancel to near zero here and there).
    for got, expected in zip(results[1], results[0]):
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)
