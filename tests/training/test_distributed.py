"""Data-parallel training: shards, and real 2-process jobs on Cora (gloo)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pyg_attn.training.distributed import launch, under_torchrun
from pyg_attn.training.models import ModelConfig, NodeClassifier
from pyg_attn.training.node_classification import (Evaluator, TrainConfig, load_node_data,
                                                   train_node_classification)
from pyg_attn.training.shard import Shard


@pytest.mark.parametrize("n, world", [(140, 2), (7, 2), (10, 3), (5, 5)])
def test_shards_are_disjoint_equal_and_cover_all_but_a_remainder(n, world):
    nodes = torch.arange(100, 100 + n)
    shards = [Shard(rank, world, torch.device("cpu")).select(nodes) for rank in range(world)]
    assert len({s.numel() for s in shards}) == 1
    taken = torch.cat(shards)
    assert taken.unique().numel() == taken.numel() == n - n % world


def test_single_process_shard_is_a_no_op():
    shard = Shard.single("cpu")
    model = torch.nn.Linear(2, 2)
    nodes = torch.arange(5)
    assert shard.is_main and shard.select(nodes) is nodes and shard.wrap(model) is model
    assert shard.split(nodes) is nodes
    values = torch.tensor([1.0, 2.0])
    assert shard.all_sum(values) is values and values.tolist() == [1.0, 2.0]
    shard.after_step(model)
    assert shard.steps_checked == 0
    model(torch.ones(1, 2)).sum().backward()
    assert shard.start_gradient_sync(model) is None  # alone: the gradients stay as they are


@pytest.mark.parametrize("device, world, ddp", [("cpu", 1, False), ("cpu", 2, False),
                                                ("cuda:0", 1, False), ("cuda:1", 2, True)])
def test_only_several_cuda_processes_use_ddp(device, world, ddp):
    assert Shard(0, world, torch.device(device)).uses_ddp is ddp


@pytest.mark.parametrize("n, world", [(500, 2), (7, 2), (2, 3)])
def test_evaluation_parts_cover_every_node_once(n, world):
    nodes = torch.arange(n)
    parts = [Shard(rank, world, torch.device("cpu")).split(nodes) for rank in range(world)]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    assert max(p.numel() for p in parts) - min(p.numel() for p in parts) <= 1


def evaluate_val_and_test(config, *, resume, progress, shard):
    """A training function for launch: only evaluates fresh, seeded model weights."""
    data, num_features, num_classes = load_node_data(config.dataset)
    torch.manual_seed(config.seed)
    model = NodeClassifier(num_features, num_classes, config.model_config())
    return [Evaluator(data, data[mask].nonzero().view(-1), shard)(model)
            for mask in ("val_mask", "test_mask")]


@pytest.mark.parametrize("world", [2, 3])
def test_evaluation_parts_score_as_the_whole_graph(shipped_data, world):
    data, num_features, num_classes = load_node_data("Cora")
    torch.manual_seed(0)
    model = NodeClassifier(num_features, num_classes, ModelConfig("gat", hidden=4, heads=2))
    model.eval()
    nodes = data.val_mask.nonzero().view(-1)
    with torch.no_grad():
        whole = model(data.x, data.edge_index)[nodes]
    for rank in range(world):
        part = Evaluator(data, nodes, Shard(rank, world, torch.device("cpu")))
        assert part.x.size(0) < data.num_nodes  # a neighbourhood, not the whole graph
        with torch.no_grad():
            scores = model(part.x, part.edge_index)[part.targets]
        torch.testing.assert_close(scores, whole[rank::world])


def test_two_processes_evaluate_as_one(shipped_data, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(dataset="Cora", hidden=4, heads=2, seed=3, nprocs=2,
                         out=str(tmp_path))
    parallel = launch(evaluate_val_and_test, config, progress=False, threads=1)
    single = evaluate_val_and_test(config, resume=False, progress=False,
                                   shard=Shard.single())
    for (loss, acc), (single_loss, single_acc) in zip(parallel, single):
        assert acc == single_acc and loss == pytest.approx(single_loss, rel=1e-6)
    assert json.loads((tmp_path / "distributed.json").read_text())["world_size"] == 2


def test_too_few_nodes_for_the_processes():
    with pytest.raises(ValueError, match="3 processes"):
        Shard(0, 3, torch.device("cpu")).select(torch.arange(2))


def test_torchrun_detection(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert not under_torchrun()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert under_torchrun()


@pytest.mark.slow
def test_two_processes_stay_in_sync_and_match_one(shipped_data, tmp_path, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    settings = dict(dataset="Cora", model="gat", epochs=12, patience=100, seed=1)
    parallel = launch(train_node_classification,
                      TrainConfig(nprocs=2, out=str(tmp_path / "ddp"), **settings),
                      progress=False, check_sync=True)
    single = train_node_classification(TrainConfig(out=str(tmp_path / "one"), **settings),
                                       progress=False)

    report = json.loads(Path(tmp_path / "ddp" / "distributed.json").read_text())
    assert report["world_size"] == 2 and report["backend"] == "gloo"
    assert report["steps_checked"] == 12          # one full-batch step per epoch
    assert report["max_param_diff"] == 0.0        # replicas identical after every step
    assert len(parallel) == 1 and len(parallel[0].epochs) == 12
    assert abs(parallel[0].test_acc - single[0].test_acc) <= 0.02


@pytest.mark.slow
def test_two_processes_with_neighbor_batches_stay_in_sync(shipped_data, tmp_path, monkeypatch):
    """Mini-batches: each process samples its own, the gradients are summed while
    the next one is sampled, and the replicas stay identical."""
    pytest.importorskip("torch_sparse")
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(dataset="Cora", model="gat", epochs=2, seed=2, nprocs=2,
                         loader="neighbor", split="full", batch_size=256,
                         out=str(tmp_path))
    results = launch(train_node_classification, config, progress=False, check_sync=True,
                     threads=1)
    report = json.loads((tmp_path / "distributed.json").read_text())
    # 1,208 training nodes, 604 per process: 3 steps per epoch.
    assert report["steps_checked"] == 6 and report["max_param_diff"] == 0.0
    assert results[0].epochs[-1].train_loss > 0
