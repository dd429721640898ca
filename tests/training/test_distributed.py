"""Data-parallel training: shards, and a real 2-process DDP job on Cora (gloo)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pyg_attn.training.distributed import launch, under_torchrun
from pyg_attn.training.node_classification import TrainConfig, train_node_classification
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
    assert shard.agree(True) and not shard.agree(False)
    shard.after_step(model)
    assert shard.steps_checked == 0


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
