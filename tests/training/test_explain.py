"""``explain``: attention export (all layers, edge ids) and pictures of a trained model."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from pyg_attn.training.explain import explain, find_checkpoint
from pyg_attn.training.node_classification import (TrainConfig, load_node_data,
                                                   train_node_classification)


@pytest.fixture
def trained(tiny):
    tiny["epochs"] = 2
    train_node_classification(TrainConfig(**tiny), progress=False)
    return Path(tiny["out"])


def test_exports_every_layer_with_edge_ids(trained, tmp_path):
    written = explain(trained, node=5, out=tmp_path / "ex")
    assert set(written) == {"csv", "json", "attention_png", "rollout_png"}
    data, _, _ = load_node_data("Cora")
    summary = json.loads(written["json"].read_text())
    assert list(summary["layers"]) == ["conv1", "conv2"]
    for name, heads in (("conv1", 2), ("conv2", 1)):
        layer = summary["layers"][name]
        edge_index, edge_id = torch.tensor(layer["edge_index"]), torch.tensor(layer["edge_id"])
        alpha = torch.tensor(layer["alpha"])
        assert layer["heads"] == heads and alpha.shape == (edge_id.numel(), heads)
        kept = edge_id >= 0
        assert torch.equal(edge_index[:, kept], data.edge_index[:, edge_id[kept]])
        assert bool((edge_index[0, ~kept] == edge_index[1, ~kept]).all())  # added loops
        sums = torch.zeros(data.num_nodes, heads).index_add_(0, edge_index[1], alpha)
        torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-4, rtol=0)

    node = summary["node"]
    assert node["id"] == 5 and node["label"] == int(data.y[5])
    incoming = node["incoming"]["conv2"]
    assert sorted(incoming["source"]) == sorted(
        data.edge_index[0, data.edge_index[1] == 5].tolist() + [5])
    shares = node["rollout_top"]["share"]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-5

    with open(written["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["layer", "edge_id", "source", "target", "head", "alpha"]
    assert len(rows) == sum(len(l["edge_id"]) * l["heads"] for l in summary["layers"].values())

    for key in ("attention_png", "rollout_png"):
        image = matplotlib.image.imread(written[key])
        assert np.unique(image).size > 1


def test_default_folder_and_checkpoint_lookup(trained):
    best = trained / "run0" / "best.pt"
    assert find_checkpoint(trained) == best == find_checkpoint(best.parent) == find_checkpoint(best)
    written = explain(best, node=0)
    assert written["csv"].parent == trained / "run0" / "explain"


def test_bad_arguments(trained, tmp_path):
    with pytest.raises(ValueError, match="node"):
        explain(trained, node=10**6)
    with pytest.raises(ValueError, match="hops"):
        explain(trained, node=0, hops=0)
    with pytest.raises(FileNotFoundError, match="best.pt"):
        explain(tmp_path / "nothing", node=0)
