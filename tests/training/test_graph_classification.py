"""Graph classification: the splits, the model and the cross-validation protocol."""
from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Batch, Data, InMemoryDataset

from pyg_attn.training.graph_classification import CVResult, cross_validate, train_fold
from pyg_attn.training.graph_classifier import GraphClassifier, PoolConfig
from pyg_attn.training.splits import cv_splits, stratified_folds


def labels_of(counts):
    """Shuffled labels with ``counts[c]`` graphs of class ``c``."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(7))]


class TinyGraphs(InMemoryDataset):
    """Rings whose class is told by a feature; each graph carries its index ``gid``."""

    def __init__(self, num_graphs: int = 24) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        graphs = []
        for gid in range(num_graphs):
            n = 3 + gid % 4
            label = gid % 3 % 2
            ring = torch.arange(n)
            edge_index = torch.stack([torch.cat([ring, (ring + 1) % n]),
                                      torch.cat([(ring + 1) % n, ring])])
            x = torch.randn(n, 3, generator=generator)
            x[:, 0] = float(label)
            graphs.append(Data(x=x, edge_index=edge_index, edge_attr=torch.ones(2 * n, 2),
                               y=torch.tensor([label]), gid=torch.tensor([gid])))
        self.data, self.slices = self.collate(graphs)


@pytest.mark.parametrize("counts,folds", [([63, 125], 10), ([5, 9, 13], 4), ([3, 3], 6)])
def test_folds_stratified_disjoint_covering(counts, folds):
    labels = labels_of(counts)
    parts = stratified_folds(labels, folds, seed=3)
    assert len(parts) == folds
    everything = torch.cat(parts)
    assert sorted(everything.tolist()) == list(range(labels.numel()))  # disjoint, covering
    sizes = [p.numel() for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for cls, count in enumerate(counts):
        per_fold = [int((labels[p] == cls).sum()) for p in parts]
        assert max(per_fold) - min(per_fold) <= 1
        assert sum(per_fold) == count
    assert all(bool((p[1:] > p[:-1]).all()) for p in parts)


def test_folds_follow_the_seed():
    labels = labels_of([20, 30])
    same = stratified_folds(labels, 5, seed=1), stratified_folds(labels, 5, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(*same))
    other = stratified_folds(labels, 5, seed=2)
    assert any(not torch.equal(a, b) for a, b in zip(same[0], other))


def test_cv_splits_keep_test_apart():
    labels = labels_of([63, 125])
    splits = cv_splits(labels, 10, seed=0, val_fraction=0.1)
    tests = stratified_folds(labels, 10, seed=0)
    for split, test in zip(splits, tests):
        assert torch.equal(split.test, test)
        train, val = set(split.train.tolist()), set(split.val.tolist())
        assert not train & val and not (train | val) & set(test.tolist())
        assert len(train | val | set(test.tolist())) == labels.numel()
        for cls in (0, 1):  # validation drawn per class
            rest = int((labels[split.train] == cls).sum() + (labels[split.val] == cls).sum())
            assert int((labels[split.val] == cls).sum()) == round(0.1 * rest)
    # Every graph is tested exactly once over the folds.
    assert sorted(torch.cat([s.test for s in splits]).tolist()) == list(range(188))


def test_split_errors():
    with pytest.raises(TypeError, match="labels"):
        stratified_folds(torch.tensor([0.0, 1.0]), 2)
    with pytest.raises(ValueError, match="labels"):
        stratified_folds(torch.zeros(2, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(torch.tensor([0, 1, 0]), 4)
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(torch.tensor([0, 1, 0]), 1)
    with pytest.raises(ValueError, match="val_fraction"):
        cv_splits(torch.tensor([0, 1, 0, 1]), 2, val_fraction=1.0)


def test_config_errors():
    with pytest.raises(ValueError, match="model"):
        PoolConfig(model="gcn")
    with pytest.raises(ValueError, match="hidden"):
        PoolConfig(hidden=0)
    with pytest.raises(ValueError, match="dropout"):
        PoolConfig(dropout=1.0)
    with pytest.raises(ValueError, match="lr"):
        PoolConfig(lr=0.0)
    with pytest.raises(TypeError, match="config"):
        GraphClassifier(3, 2, config={"hidden": 4})  # type: ignore[arg-type]


def test_baseline_is_the_same_network():
    """Same seed, same parameters; PyG's layers then give the same outputs."""
    batch = Batch.from_data_list([TinyGraphs(6)[i] for i in range(6)])
    models = []
    for name in ("gat-pool", "pyg-gat-pool"):
        torch.manual_seed(5)
        models.append(GraphClassifier(3, 2, 2, PoolConfig(model=name, hidden=4, heads=2)).eval())
    ours, theirs = models
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    torch.testing.assert_close(ours(batch), theirs(batch), rtol=1e-5, atol=1e-5)
    logits, weights = ours(batch, return_attention_weights=True)
    sums = torch.zeros(6).index_add_(0, batch.batch, weights.view(-1))
    torch.testing.assert_close(sums, torch.ones(6))


def test_test_fold_unseen_until_final_evaluation(monkeypatch):
    dataset = TinyGraphs(24)
    split = cv_splits(dataset.y, folds=4, seed=0, val_fraction=0.2)[1]
    calls = []

    def record(module, args):
        calls.append((module.training, set(args[0].gid.tolist())))

    torch.manual_seed(0)
    config = PoolConfig(hidden=4, heads=1, layers=1, epochs=3, batch_size=5)
    original_init = GraphClassifier.__init__

    def init_and_hook(self, *args, **kwargs):  # every model train_fold builds is watched
        original_init(self, *args, **kwargs)
        self.register_forward_pre_hook(record)

    monkeypatch.setattr(GraphClassifier, "__init__", init_and_hook)
    result = train_fold(dataset, split, config, seed=0)
    test = set(split.test.tolist())
    final = math.ceil(len(test) / config.batch_size)
    before, after = calls[:-final], calls[-final:]
    assert all(not seen & test for _, seen in before)
    assert set().union(*(seen for _, seen in after)) == test
    assert not any(training for training, _ in after)
    seen_training = set().union(*(seen for training, seen in before if training))
    assert seen_training == set(split.train.tolist())
    assert 1 <= result.best_epoch <= 3 and 0.0 <= result.test_accuracy <= 1.0


@pytest.mark.slow
def test_cross_validate_quick_mutag(tmp_path, monkeypatch):
    monkeypatch.setenv("PYG_ATTN_CACHE", str(tmp_path))
    results = [cross_validate("MUTAG", folds=10, seed=0, epochs=2, progress=False,
                              config=PoolConfig(model=name, hidden=4, heads=2, layers=1),
                              fold_ids=[0, 3])
               for name in ("gat-pool", "pyg-gat-pool")]
    for result in results:
        assert isinstance(result, CVResult)
        assert len(result.accuracies) == 2
        assert all(0.0 <= acc <= 1.0 for acc in result.accuracies)
        assert all(1 <= epoch <= 2 for epoch in result.best_epochs)
        summary = result.to_dict()
        assert summary["mean"] == pytest.approx(sum(result.accuracies) / 2)
        assert summary["config"]["epochs"] == 2
        assert "over 2 folds" in result.summary()
    assert results[0].to_dict()["test_folds"] == results[1].to_dict()["test_folds"]
    with pytest.raises(ValueError, match="fold_ids"):
        cross_validate("MUTAG", folds=10, fold_ids=[10], progress=False)
    with pytest.raises(TypeError, match="dataset"):
        cross_validate(42, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'model' 'pyg-gat-pool' is not config.model"):
        cross_validate("MUTAG", model="pyg-gat-pool", config=PoolConfig(), progress=False)
