"""Backend choice for the Triton kernels (pure logic: no kernel runs here)."""
from __future__ import annotations

import warnings

import pytest
import torch

from pyg_attn.ops import attention, graph_attention, select_backend


def test_cuda_tensors_default_to_triton():
    assert select_backend(None, torch.device("cuda")) == "triton"
    assert select_backend("triton", torch.device("cuda")) == "triton"
    assert select_backend("reference", torch.device("cuda")) == "reference"


def test_cpu_tensors_use_triton_only_when_forced_under_the_interpreter(monkeypatch):
    assert select_backend(None, torch.device("cpu")) in ("cpu", "reference")
    if attention.interpreter_active():
        assert select_backend("triton", torch.device("cpu")) == "triton"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        select_backend("triton", torch.device("cpu"))
    q = torch.randn(3, 1, 2)
    with pytest.raises(RuntimeError, match="'backend'='triton'"):
        graph_attention(q, q, q, torch.tensor([[0], [1]]), backend="triton")


def test_without_triton_cuda_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(attention, "triton_importable", lambda: False)
    monkeypatch.setattr(attention, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            assert select_backend(None, torch.device("cuda")) == "reference"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "Triton is not installed" in messages[0]
    with pytest.raises(RuntimeError, match="Triton is not installed"):
        select_backend("triton", torch.device("cuda"))


def test_other_devices_are_refused():
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        select_backend("triton", torch.device("meta"))
