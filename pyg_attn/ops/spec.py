"""The argument lists of the fused attention ops, written once.

A fused attention op (the CPU op ``pyg_attn::fused_attention`` and the Triton op
``pyg_attn::triton_fused_attention``) takes its :attr:`FusedOpSpec.inputs`

* ``kind`` (``int``, :data:`pyg_attn.ops.score_kinds.KIND_IDS`);
* the op's graph tensors (:attr:`FusedOpSpec.graph`: the CPU op's CSR and CSC,
  the Triton op's int32 views and work items);
* the :data:`FEATURES` ``dst [N_dst, H, C]``, ``src [N_src, H, C]``,
  ``value [N_src, H, Cv]`` and the optional ``att [H, C]``,
  ``edge_score [E, H]``, ``edge_feat [E, H, C]``, ``edge_value [E, H, Cv]``;
* ``edge_mask`` (``[E]`` bool, optional), ``seed`` (a 0-dim int64 tensor on
  the features' device, :func:`pyg_attn.ops.dropout.draw_seed`; ``None``
  without dropout) and the floats ``scale``, ``negative_slope``, ``dropout``;

then ``need_alpha`` (forward) or the :data:`BACKWARD_EXTRA` arguments ``out``,
``lse`` (the forward's row statistics), ``grad_out``, ``grad_alpha``, ``alpha``
(the forward's attention ``[E, H]`` when it was computed: a backward that takes it
reads it instead of recomputing it) and ``needs`` (backward).  The forward
returns ``(out [N_dst, H, Cv], stats [N_dst, H, 2], alpha [E or 0, H])``, the
backward the gradients of the features (empty where not needed).

Everything that lists these arguments is derived from here: the op schemas,
fake implementations and autograd formula (:mod:`pyg_attn.ops.library`), the
Triton launcher's argument handling (:mod:`pyg_attn.ops.triton.fused_attention`)
and the C++ entry points' parameters and argument structs, ``csrc/fused_args.h``,
which ``python -m pyg_attn.ops.spec`` generates from :data:`CPU_OP` (a test
checks that it is current).
"""
from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["BACKWARD_EXTRA", "CPU_OP", "FEATURES", "TRITON_OP", "Arg", "FusedOpSpec",
           "accumulation_dtype", "cpp_header"]


@dataclass(frozen=True)
class Arg:
    """One argument: its name and its ``torch.library`` schema type (``"Tensor"``,
    ``"Tensor?"``, ``"int"``, ``"float"``, ``"bool"`` or ``"bool[]"``)."""

    name: str
    type: str


def _args(kind: str, names: str) -> tuple[Arg, ...]:
    return tuple(Arg(name, kind) for name in names.split())


#: The feature tensors, in argument order: the backward's gradients come in this order.
FEATURES = ("dst", "src", "value", "att", "edge_score", "edge_feat", "edge_value")
_FEATURE_ARGS = (*_args("Tensor", "dst src value"),
                 *_args("Tensor?", "att edge_score edge_feat edge_value"))
#: The inputs after the features: the last tensors, then the (float) scalars.
_TAIL = (*_args("Tensor?", "edge_mask seed"), *_args("float", "scale negative_slope dropout"))
#: The backward's arguments after the inputs.
BACKWARD_EXTRA = (*_args("Tensor", "out lse grad_out"), *_args("Tensor?", "grad_alpha alpha"),
                  Arg("needs", "bool[]"))
_FORWARD_EXTRA = (Arg("need_alpha", "bool"),)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 inputs, else float32: the dtype of ``stats`` and
    ``alpha`` (the CPU op takes float32 and float64 only, so there it is the
    inputs' dtype)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class FusedOpSpec:
    """The arguments of one fused attention op and of its backward op.

    The inputs are ``kind``, then tensors (``None`` for an absent optional
    one), then floats: the autograd formula saves ``inputs[1:first_scalar]``
    and keeps the rest, by position.

    Parameters
    ----------
    name : str
        The forward op's name in the ``pyg_attn`` namespace; the backward op is
        ``name + "_backward"``.
    graph : tuple of str
        The graph tensors, in argument order (each ``Tensor``).

    Attributes
    ----------
    forward_tuple, backward_tuple : callable
        Named tuples of :attr:`forward_args` / :attr:`backward_args`
        (``forward_tuple(*args).value``).
    """

    name: str
    graph: tuple[str, ...]
    forward_tuple: Callable[..., Any] = field(init=False, repr=False, compare=False)
    backward_tuple: Callable[..., Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for attr, args in (("forward_tuple", self.forward_args),
                           ("backward_tuple", self.backward_args)):
            object.__setattr__(self, attr, collections.namedtuple(
                f"{self.name}_{attr}", [arg.name for arg in args]))

    @property
    def inputs(self) -> tuple[Arg, ...]:
        """``kind``, the graph tensors, the features, ``edge_mask``, ``seed``, the scalars."""
        return (Arg("kind", "int"), *_args("Tensor", " ".join(self.graph)), *_FEATURE_ARGS,
                *_TAIL)

    @property
    def forward_args(self) -> tuple[Arg, ...]:
        return (*self.inputs, *_FORWARD_EXTRA)

    @property
    def backward_args(self) -> tuple[Arg, ...]:
        return (*self.inputs, *BACKWARD_EXTRA)

    @property
    def first_feature(self) -> int:
        """Position of ``dst``, the first feature."""
        return 1 + len(self.graph)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def first_scalar(self) -> int:
        """Position of ``scale``, the first float (every input before it but
        ``kind`` is a tensor or ``None``)."""
        return self.position("scale")

    def position(self, name: str) -> int:
        """Position of the input ``name`` (the same in the forward and the backward)."""
        return [arg.name for arg in self.inputs].index(name)

    def graph_tensors(self, graph: Any) -> tuple[torch.Tensor, ...]:
        """The attributes :attr:`graph` of ``graph`` (a
        :class:`~pyg_attn.ops.graph.PreparedGraph` or
        :class:`~pyg_attn.ops.triton.work.TritonGraph`), in argument order
        (a plain loop: ``torch.compile`` traces it, not ``operator.attrgetter``)."""
        return tuple(getattr(graph, name) for name in self.graph)

    def schema(self, backward: bool = False) -> str:
        """The ``torch.library`` schema of the forward or backward op (no name)."""
        args = self.backward_args if backward else self.forward_args
        returns = "Tensor[]" if backward else "(Tensor, Tensor, Tensor)"
        return f"({', '.join(f'{arg.type} {arg.name}' for arg in args)}) -> {returns}"

#: The CPU op: a :class:`~pyg_attn.ops.graph.PreparedGraph`'s CSR and CSC.
CPU_OP = FusedOpSpec("fused_attention",
                     ("rowptr", "col", "perm", "colptr", "csc_row", "csc_edge"))
#: The Triton op: a :class:`~pyg_attn.ops.triton.work.TritonGraph`'s tensors.
TRITON_OP = FusedOpSpec("triton_fused_attention",
                        ("rowptr", "col", "perm", "csc_row", "csc_edge", "csc_slot",
                         "dst_items", "merge_ptr", "slot_row", "src_items"))

#: The generated C++ header.
HEADER = Path(__file__).with_name("csrc") / "fused_args.h"

_CPP_TYPES = {"int": "int64_t", "float": "double", "bool": "bool",
              "Tensor": "const at::Tensor&", "Tensor?": "const c10::optional<at::Tensor>&",
              "bool[]": "const std::vector<bool>&"}


def _cpp_params(args: tuple[Arg, ...]) -> str:
    return ", \\\n    ".join(f"{_CPP_TYPES[arg.type]} {arg.name}" for arg in args)


def _cpp_struct(name: str, doc: str, args: tuple[Arg, ...]) -> str:
    fields = "".join(f"  {_CPP_TYPES[arg.type]} {arg.name};\n" for arg in args)
    return f"// {doc}\nstruct {name} {{\n{fields}}};\n"


def _cpp_init(name: str, args: tuple[Arg, ...]) -> str:
    return f"{name}{{{', '.join(arg.name for arg in args)}}}"


def cpp_header(spec: FusedOpSpec = CPU_OP) -> str:
    """The text of ``csrc/fused_args.h``: the argument structs of ``spec``'s C++
    entry points and macros of their parameter lists."""
    inputs = spec.inputs
    return (
        "// Generated by `python -m pyg_attn.ops.spec` from pyg_attn/ops/spec.py; do not edit.\n"
        f"// The arguments of pyg_attn::{spec.name} and its backward: the entry points\n"
        "// take PYG_ATTN_FORWARD_PARAMS / PYG_ATTN_BACKWARD_PARAMS and gather them (by\n"
        "// reference) with PYG_ATTN_INPUTS and PYG_ATTN_BACKWARD_EXTRA.\n"
        f"constexpr size_t kNumFeatures = {len(FEATURES)};  // gradients, flags in 'needs'\n"
        + _cpp_struct("FusedInputs", "Shared by the forward and the backward.", inputs)
        + _cpp_struct("BackwardExtra", "The backward's own arguments.", BACKWARD_EXTRA)
        + f"#define PYG_ATTN_INPUT_PARAMS \\\n    {_cpp_params(inputs)}\n"
        + "#define PYG_ATTN_FORWARD_PARAMS PYG_ATTN_INPUT_PARAMS, "
        + f"{_cpp_params(_FORWARD_EXTRA)}\n"
        + "#define PYG_ATTN_BACKWARD_PARAMS PYG_ATTN_INPUT_PARAMS, \\\n    "
        + f"{_cpp_params(BACKWARD_EXTRA)}\n"
        + f"#define PYG_ATTN_INPUTS {_cpp_init('FusedInputs', inputs)}\n"
        + f"#define PYG_ATTN_BACKWARD_EXTRA {_cpp_init('BackwardExtra', BACKWARD_EXTRA)}\n")


if __name__ == "__main__":
    HEADER.write_text(cpp_header(), encoding="utf-8")
    print(f"wrote {HEADER}")
