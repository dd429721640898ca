"""Training loop, early stopping, resume, metrics files, NeighborLoader path."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch_geometric.typing

from pyg_attn.training.checkpoint import load_checkpoint, load_config
from pyg_attn.training.node_classification import (EarlyStopping, TrainConfig, format_summary,
                                                   load_node_data, train_node_classification)


class Interrupt(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def interrupt_at(run: int, epoch: int):
    def callback(record):
        if (record.run, record.epoch) == (run, epoch):
            raise Interrupt
    return callback


def test_runs_write_metrics_checkpoints_and_config(tiny):
    config = TrainConfig(runs=2, seed=3, **tiny)
    results = train_node_classification(config, progress=False)
    out = Path(config.out)
    assert [r.seed for r in results] == [3, 4]
    assert all(len(r.epochs) == 4 and 1 <= r.best_epoch <= 4 for r in results)
    assert load_config(out) == config.to_dict()

    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(r["run"]), int(r["epoch"])) for r in rows] == \
        [(run, epoch) for run in (0, 1) for epoch in range(1, 5)]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    accs = [r.test_acc for r in results]
    assert [r["test_acc"] for r in metrics["runs"]] == accs
    assert metrics["summary"]["test_acc"]["mean"] == pytest.approx(sum(accs) / 2)

    for r in results:
        best = load_checkpoint(out / f"run{r.run}" / "best.pt")
        assert best["epoch"] == r.best_epoch and best["val_acc"] == r.val_acc
        assert best["model_config"]["hidden"] == 2
        assert not list((out / f"run{r.run}").glob(".*.tmp"))  # no temp file left behind
    assert format_summary(results).endswith("% over 2 runs")


def test_same_seed_same_result(tiny, tmp_path):
    first = train_node_classification(TrainConfig(**tiny), progress=False)[0]
    tiny["out"] = str(tmp_path / "again")
    second = train_node_classification(TrainConfig(**tiny), progress=False)[0]
    assert [e.val_loss for e in first.epochs] == [e.val_loss for e in second.epochs]


@pytest.mark.slow
def test_interrupted_run_resumes_where_it_stopped(tiny, tmp_path):
    tiny.update(epochs=6, runs=2, save_every=2)
    reference = train_node_classification(TrainConfig(**tiny), progress=False)

    tiny["out"] = str(tmp_path / "interrupted")
    config = TrainConfig(**tiny)
    with pytest.raises(Interrupt):
        train_node_classification(config, progress=False, callback=interrupt_at(1, 3))
    state = load_checkpoint(Path(config.out) / "run1" / "state.pt")
    assert state["epoch"] == 2 and not state["finished"]

    seen = []
    resumed = train_node_classification(config, resume=True, progress=False,
                                        callback=lambda record: seen.append(
                                            (record.run, record.epoch)))
    assert seen == [(1, epoch) for epoch in range(3, 7)]  # run 0 was finished: read back
    for ours, theirs in zip(resumed, reference):
        assert ours.test_acc == theirs.test_acc and ours.best_epoch == theirs.best_epoch
        assert [e.val_loss for e in ours.epochs] == [e.val_loss for e in theirs.epochs]


def test_resume_allows_more_runs_but_not_other_settings(tiny):
    train_node_classification(TrainConfig(**tiny), progress=False)
    results = train_node_classification(TrainConfig(**{**tiny, "runs": 2}), resume=True,
                                        progress=False)
    assert len(results) == 2
    with pytest.raises(ValueError, match="lr"):
        train_node_classification(TrainConfig(**{**tiny, "lr": 0.1}), resume=True,
                                  progress=False)


def test_resume_needs_a_training_folder(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        train_node_classification(TrainConfig(**{**tiny, "out": str(tmp_path / "none")}),
                                  resume=True, progress=False)


def test_neighbor_loader(tiny):
    config = TrainConfig(loader="neighbor", num_neighbors=[5, 5], batch_size=32, **tiny)
    [result] = train_node_classification(config, progress=False)
    assert len(result.epochs) == 4
    assert all(math.isfinite(e.train_loss) and 0 <= e.train_acc <= 1 for e in result.epochs)


def test_neighbor_loader_without_sampler_names_the_extra(tiny, monkeypatch):
    monkeypatch.setattr(torch_geometric.typing, "WITH_TORCH_SPARSE", False)
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", False)
    with pytest.raises(ImportError, match=r"pyg-attn\[scatter\]"):
        train_node_classification(TrainConfig(loader="neighbor", **tiny), progress=False)


def test_full_split_trains_on_more_nodes(shipped_data):
    public, _, _ = load_node_data("Cora")
    full, _, _ = load_node_data("Cora", split="full")
    assert (int(public.train_mask.sum()), int(full.train_mask.sum())) == (140, 1208)


def test_graph_data_set_is_refused(shipped_data):
    with pytest.raises(ValueError, match="gat-pool"):
        load_node_data("MUTAG")


def test_early_stopping_rule():
    stopper = EarlyStopping(patience=3)
    assert stopper.step(1.0, 0.5) == (True, False)
    assert stopper.step(0.8, 0.4) == (False, False)   # loss better: patience reset, not kept
    assert stopper.step(0.9, 0.5) == (False, False)   # accuracy ties the best: reset
    assert stopper.step(0.7, 0.6) == (True, False)    # both better: kept
    assert [stopper.step(0.9, 0.1) for _ in range(3)] == [(False, False), (False, False),
                                                          (False, True)]
    copy = EarlyStopping(patience=3)
    copy.load_state_dict(stopper.state_dict())
    assert copy.state_dict() == stopper.state_dict()
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(0)


@pytest.mark.parametrize("kwargs, name", [
    ({"runs": 0}, "runs"), ({"lr": 0.0}, "lr"), ({"weight_decay": -1.0}, "weight_decay"),
    ({"loader": "cluster"}, "loader"), ({"num_neighbors": [0]}, "num_neighbors"),
    ({"split": "random"}, "split"),
    ({"device": "tpu"}, "device"), ({"model": "gcn"}, "model"), ({"heads": 0}, "heads")])
def test_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**kwargs)


def test_config_round_trip():
    config = TrainConfig(model="gatv2", num_neighbors=[4, 3])
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"dataset": "Cora", "colour": "red"})
