"""Transformer attention over tokens: records (convert.tokens) and the explorer's token page.

The page in a browser is driven by ``test_explorer_tokens_browser.py``.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pyg_attn.analysis import attention_flow, attention_received, attention_rollout
from pyg_attn.convert import attention_to_networkx, token_attention, token_stack
from pyg_attn.nn import SelfAttention
from pyg_attn.visualization import explorer
from pyg_attn.visualization.explorer_tokens import SCALE, TOPK_FROM

from .test_explorer import embedded
from .token_attention import attention_tuple, decoded_weights, token_words

#: Size bound of a 12-layer, 12-head page over 128 tokens.
MAX_TOKEN_BYTES = 3_000_000


@pytest.fixture(scope="module")
def tuple16():
    return attention_tuple(), token_words(16)


# ----------------------------------------------------------------------------- convert
def test_token_records_feed_every_analysis(tuple16):
    attentions, words = tuple16
    records = token_attention(attentions, labels=words, batch=1)
    assert list(records) == [f"layer {k}" for k in range(4)] and records.labels == words
    stack = torch.stack([a[1] for a in attentions]).double()  # [L, H, T, T]
    first = records["layer 0"]
    assert first.edge_index.size(1) == 16 * 16 and first.num_heads == 4
    j, i = first.edge_index
    assert torch.equal(first.alpha, stack[0][:, i, j].t())
    assert torch.equal(first.edge_id, i * 16 + j)
    assert torch.allclose(attention_rollout(records).to_dense(), attention_rollout(stack))
    assert torch.allclose(attention_flow(records, targets=[3]),
                          attention_flow(stack, targets=[3]), atol=1e-6)
    G = attention_to_networkx(records["layer 2"])
    assert G.edges[5, 9]["weight"] == pytest.approx(float(stack[2, :, 9, 5].mean()))
    received = attention_received(G)
    assert float(received[5]) == pytest.approx(float(stack[2].mean(0)[:, 5].sum()))


def test_padding_is_left_out():
    attentions = list(attention_tuple(layers=2, heads=2, tokens=6, batch=1))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    for k, layer in enumerate(attentions):  # the model gave padding keys no weight
        layer = layer.clone()
        layer[..., 4:] = 0
        attentions[k] = layer / layer.sum(-1, keepdim=True)
    stack = token_stack(attentions, attention_mask=mask)
    assert stack.positions.tolist() == [0, 1, 2, 3] and stack.length == 6
    assert torch.allclose(stack.weights, torch.stack([a[0] for a in attentions])[:, :, :4, :4]
                          .double())
    records = token_attention(attentions, labels=list("abcdef"), attention_mask=mask)
    assert records.labels == list("abcd") and records.num_nodes == 4
    content = explorer(attentions, labels=list("abcdef"), attention_mask=mask[0]).data
    assert content["tokens"] == list("abcd") and content["nodes"] == [0, 1, 2, 3]
    assert content["message"] == "2 padding positions (attention_mask = 0) are left out."
    with pytest.raises(ValueError, match="attention_mask"):  # padding with weight
        token_stack(attention_tuple(layers=1, heads=2, tokens=6, batch=1), attention_mask=mask)


def test_multihead_attention_weights(tuple16):
    torch.manual_seed(0)
    layer = SelfAttention(8, num_heads=2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        _, weights = layer(x, x, x, average_attn_weights=False)  # [B, H, T, T]
    content = explorer([weights, weights], labels=list("hello"), batch=2).data
    got = decoded_weights(content["layers"][0], 5, content["scale"])
    assert np.allclose(got, weights[2].numpy(), atol=0.5 / SCALE + 1e-7)


# ----------------------------------------------------------------------------- page data
def test_page_data_equals_the_attention(tuple16):
    attentions, words = tuple16
    page = explorer(attentions, labels=words, batch=0, node=5, flow_targets=2)
    content = embedded(page.html)
    assert content == page.data and content["kind"] == "tokens"
    assert content["tokens"] == words and content["nodes"] == list(range(16))
    assert content["title"] == "Attention over 16 tokens" and content["centre"] == 5
    assert content["scale"] == SCALE and content["filter"] == {"mode": "threshold", "value": 0}
    stack = torch.stack([a[0] for a in attentions]).double()
    for k, layer in enumerate(content["layers"]):
        assert layer["name"] == f"layer {k}" and layer["heads"] == 4
        got = decoded_weights(layer, 16, SCALE)
        assert np.abs(got - stack[k].numpy()).max() <= 0.5 / SCALE + 1e-12
    rollout = decoded_weights({"weights": content["rollout"], "heads": 1}, 16, SCALE)[0]
    assert np.abs(rollout - attention_rollout(stack).numpy()).max() <= 0.5 / SCALE + 1e-12
    flow = attention_flow(stack, targets=[5, 4])  # the chosen token, then the nearest
    assert sorted(content["flow"]) == ["4", "5"] and content["flow_targets"] == 2
    for row, target in enumerate([5, 4]):
        assert dict(content["flow"][str(target)]) == pytest.approx(
            {j: float(flow[row, j]) for j in range(16) if flow[row, j] > 0}, abs=1e-6)


def test_long_sequences_open_with_the_strongest_keys():
    attentions = attention_tuple(layers=1, heads=1, tokens=TOPK_FROM, batch=1)
    content = explorer(attentions).data
    assert content["filter"] == {"mode": "topk", "value": 3}
    assert content["tokens"] == [str(k) for k in range(TOPK_FROM)]
    assert content["flow_targets"] == 1 and list(content["flow"]) == ["0"]
    assert explorer(attentions, flow_targets=0).data["flow"] == {}


@pytest.mark.slow
def test_twelve_layers_of_128_tokens_page_is_small():
    attentions = attention_tuple(layers=12, heads=12, tokens=128, batch=1, sharpness=2.0)
    page = explorer(attentions, labels=token_words(128), flow_targets=0)  # flow: minutes
    size = len(page.html.encode())
    assert size < MAX_TOKEN_BYTES, size


# ----------------------------------------------------------------------------- errors
def test_bad_token_arguments_name_the_argument(tuple16):
    attentions, words = tuple16
    nan = list(attentions)
    nan[1] = nan[1].clone()
    nan[1][0, 0, 0, 0] = float("nan")
    unnormalised = [2 * a for a in attentions]
    cases = [
        (dict(attentions=[torch.rand(4, 16, 15)]), ValueError, "attentions[0]"),
        (dict(attentions=[torch.rand(16, 16)]), ValueError, "attentions[0]"),
        (dict(attentions=[attentions[0], attentions[1][:, :2]]), ValueError, "attentions"),
        (dict(attentions=nan), ValueError, "attentions[1]"),
        (dict(attentions=[-a for a in attentions]), ValueError, "attentions[0]"),
        (dict(attentions=unnormalised), ValueError, "attentions"),
        (dict(labels=words[:15]), ValueError, "labels"),
        (dict(labels="the quick"), TypeError, "labels"),
        (dict(batch=None), ValueError, "batch"),
        (dict(batch=2), ValueError, "batch"),
        (dict(batch=-1), ValueError, "batch"),
        (dict(batch=0.0), TypeError, "batch"),
        (dict(attention_mask=torch.ones(15)), ValueError, "attention_mask"),
        (dict(attention_mask=torch.zeros(16)), ValueError, "attention_mask"),
        (dict(attention_mask=torch.full((16,), 2)), ValueError, "attention_mask"),
        (dict(attention_mask="1111"), TypeError, "attention_mask"),
        (dict(node=16), ValueError, "node"),
        (dict(node="0"), TypeError, "node"),
        (dict(data=object()), ValueError, "data"),
        (dict(predictions=torch.zeros(16)), ValueError, "predictions"),
        (dict(flow_targets=-1), ValueError, "flow_targets"),
    ]
    for kwargs, error, name in cases:
        kwargs = {"attentions": attentions, "labels": words, "batch": 0, **kwargs}
        with pytest.raises(error, match=re.escape(name)):
            explorer(kwargs.pop("attentions"), **kwargs)
    with pytest.raises(ValueError, match="batch"):  # [H, T, T] layers have no batch
        explorer([a[0] for a in attentions], batch=0)
    edge_index = torch.tensor([[1], [0]])
    for name, value in (("labels", words), ("batch", 0), ("attention_mask", torch.ones(2))):
        with pytest.raises(ValueError, match=name):  # token arguments with graph records
            explorer([(edge_index, torch.ones(1))], **{name: value})
