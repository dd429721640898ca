"""The node classifiers of pyg_attn.training.models."""
from __future__ import annotations

import pytest
import torch

from pyg_attn.training.models import NODE_MODELS, ModelConfig, NodeClassifier, build_model

EDGES = torch.tensor([[0, 1, 2, 3, 4, 0], [1, 2, 3, 4, 0, 2]])


@pytest.mark.parametrize("name", NODE_MODELS)
def test_every_model_gives_class_scores(name):
    torch.manual_seed(0)
    model = build_model(6, 3, name, hidden=4, heads=2)
    out = model(torch.randn(5, 6), EDGES)
    assert out.shape == (5, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_gat_recipe_defaults():
    model = build_model(1433, 7)
    assert model.conv1.heads == 8 and model.conv1.out_channels == 8 and model.conv1.concat
    assert model.conv2.heads == 1 and not model.conv2.concat
    assert model.conv1.dropout == model.config.dropout == 0.6


def test_matches_pyg_twin_with_the_same_weights():
    torch.manual_seed(0)
    ours = build_model(6, 3, "gat", hidden=4, heads=2).eval()
    theirs = build_model(6, 3, "pyg-gat", hidden=4, heads=2).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 6)
    torch.testing.assert_close(ours(x, EDGES), theirs(x, EDGES), atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model(6, 3, "gat", hidden=4, heads=2)
    x = torch.randn(5, 6)
    model.eval()
    assert torch.equal(model(x, EDGES), model(x, EDGES))
    model.train()
    assert not torch.equal(model(x, EDGES), model(x, EDGES))


@pytest.mark.parametrize("kwargs, name", [
    ({"model": "gcn"}, "model"), ({"hidden": 0}, "hidden"), ({"heads": 1.5}, "heads"),
    ({"dropout": 1.0}, "dropout"), ({"attn_dropout": -0.1}, "attn_dropout")])
def test_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ModelConfig(**kwargs)


def test_bad_sizes_and_config_type():
    with pytest.raises(ValueError, match="num_classes"):
        NodeClassifier(4, 0)
    with pytest.raises(TypeError, match="config"):
        NodeClassifier(4, 2, {"model": "gat"})
