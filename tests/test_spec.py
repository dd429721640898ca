"""The argument spec is the one list of the fused ops' arguments in Python and C++."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.ops.cpu import load_extension
from pyg_attn.ops.spec import CPU_OP, FEATURES, HEADER, TRITON_OP, cpp_header


def test_the_cpp_header_is_generated_from_the_spec():
    assert HEADER.read_text(encoding="utf-8") == cpp_header(), \
        "csrc/fused_args.h is stale: run python -m pyg_attn.ops.spec"


@pytest.mark.parametrize("spec", [CPU_OP, TRITON_OP])
def test_layout(spec):
    """``kind``, then tensors, then floats: what the autograd formula slices on."""
    names = [arg.name for arg in spec.inputs]
    assert names[spec.first_feature:spec.first_feature + len(FEATURES)] == list(FEATURES)
    assert [arg.type for arg in spec.inputs[:1]] == ["int"]
    assert all(arg.type.startswith("Tensor") for arg in spec.inputs[1:spec.first_scalar])
    assert all(arg.type == "float" for arg in spec.inputs[spec.first_scalar:])
    assert spec.backward_args[:spec.num_inputs] == spec.inputs


@pytest.mark.skipif(load_extension() is None, reason="needs the fused CPU kernel")
def test_the_registered_schemas_are_the_spec():
    import pyg_attn.ops.library  # noqa: F401  (registers the ops)

    for name, backward in (("fused_attention", False), ("fused_attention_backward", True)):
        schema = getattr(torch.ops.pyg_attn, name).default._schema
        assert [a.name for a in schema.arguments] == \
            [a.name for a in (CPU_OP.backward_args if backward else CPU_OP.forward_args)]
