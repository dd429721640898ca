"""SelfAttention2d: SAGAN attention over feature-map positions."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.nn import SelfAttention2d


def image(batch=2, channels=16, height=4, width=6, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen, dtype=dtype)


def explicit_sagan(module: SelfAttention2d, x: torch.Tensor) -> torch.Tensor:
    """SAGAN's reference computation (bmm of the [B, C', N] projections)."""
    batch, channels, height, width = x.shape
    query = module.query_conv(x).view(batch, -1, height * width).permute(0, 2, 1)
    key = module.key_conv(x).view(batch, -1, height * width)
    attention = torch.softmax(torch.bmm(query, key), dim=-1)
    value = module.value_conv(x).view(batch, -1, height * width)
    out = torch.bmm(value, attention.permute(0, 2, 1)).view(batch, channels, height, width)
    return module.gamma * out + x


def test_identity_at_initialisation_and_shapes():
    torch.manual_seed(0)
    module = SelfAttention2d(16)
    assert module.key_channels == 2
    assert module.query_conv.out_channels == module.key_conv.out_channels == 2
    assert module.value_conv.out_channels == 16
    x = image()
    assert torch.equal(module(x), x)
    out, attn = module(x, return_attention=True)
    assert torch.equal(out, x)
    assert attn.shape == (2, 24, 24)
    assert set(module.state_dict()) == {
        "gamma", *(f"{conv}.{p}" for conv in ("query_conv", "key_conv", "value_conv")
                   for p in ("weight", "bias"))}
    assert SelfAttention2d(4).key_channels == 1  # C / 8 < 1: one channel


def test_attention_rows_are_distributions_and_match_sagan():
    torch.manual_seed(1)
    module = SelfAttention2d(16, reduction=4)
    with torch.no_grad():
        module.gamma.fill_(0.7)
    x = image(seed=1)
    out, attn = module(x, return_attention=True)
    assert bool((attn >= 0).all())
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 24))
    torch.testing.assert_close(out, explicit_sagan(module, x), atol=1e-5, rtol=1e-5)


def test_sdpa_path_equals_explicit_path_with_gradients():
    torch.manual_seed(2)
    module = SelfAttention2d(8, reduction=2)
    with torch.no_grad():
        module.gamma.fill_(-1.3)
    x = image(channels=8, seed=2).requires_grad_()
    fast = module(x)
    slow, _ = module(x, return_attention=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(fast)
    params = [x, *module.parameters()]
    for a, b in zip(torch.autograd.grad(fast, params, grad),
                    torch.autograd.grad(slow, params, grad)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gradients_reach_gamma_at_zero_and_gradcheck():
    torch.manual_seed(3)
    module = SelfAttention2d(4, reduction=2)
    x = image(batch=1, channels=4, height=2, width=3, seed=3)
    module(x).sum().backward()
    assert module.gamma.grad is not None and float(module.gamma.grad.abs()) > 0
    # At gamma = 0 the projections get no gradient yet (only through gamma).
    assert float(module.query_conv.weight.grad.abs().sum()) == 0
    module = module.double()
    with torch.no_grad():
        module.gamma.fill_(0.5)
    x64 = x.double().requires_grad_()
    for flag in (False, True):
        assert torch.autograd.gradcheck(
            lambda t: module(t, return_attention=flag)[0] if flag else module(t), (x64,))


def test_to_networkx_uses_positions():
    module = SelfAttention2d(8)
    with pytest.raises(RuntimeError, match="no attention weights"):
        module.to_networkx()
    x = image(batch=3, channels=8, height=2, width=3)
    _, attn = module(x, return_attention=True)
    graph = module.to_networkx(index=2)
    assert sorted(graph.nodes) == [(r, c) for r in range(2) for c in range(3)]
    assert graph.number_of_edges() == 36
    assert graph.edges[(0, 2), (1, 0)]["weight"] == pytest.approx(float(attn[2, 3, 2].detach()))


def test_repr_reset_and_errors():
    module = SelfAttention2d(32, reduction=4)
    assert repr(module) == "SelfAttention2d(32, reduction=4)"
    with torch.no_grad():
        module.gamma.fill_(2.0)
    module.reset_parameters()
    assert float(module.gamma) == 0.0
    with pytest.raises(ValueError, match="in_channels"):
        SelfAttention2d(0)
    with pytest.raises(ValueError, match="reduction"):
        SelfAttention2d(8, reduction=0)
    with pytest.raises(ValueError, match="'x'"):
        module(torch.randn(2, 16, 4, 4))
    with pytest.raises(ValueError, match="'x'"):
        module(torch.randn(32, 4, 4))
    with pytest.raises(TypeError, match="'x'"):
        module(torch.ones(1, 32, 2, 2, dtype=torch.long))
