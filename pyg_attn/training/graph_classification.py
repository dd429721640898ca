r"""Graph classification with attention pooling, evaluated by stratified k-fold CV.

The model is :class:`~pyg_attn.training.graph_classifier.GraphClassifier`
(``gat-pool``, or ``pyg-gat-pool`` built from PyG's layers); the splits come from
:mod:`~pyg_attn.training.splits`.

The protocol (:func:`cross_validate`) is the usual one for TU data sets, with
model selection kept off the test fold:

1. the graphs are split into ``folds`` stratified folds (class proportions kept,
   sizes within one graph of each other) by a seeded shuffle
   (:func:`~pyg_attn.training.splits.stratified_folds`);
2. in fold ``k`` the test part is fold ``k``; from the rest, a stratified
   ``val_fraction`` becomes the validation part
   (:func:`~pyg_attn.training.splits.cv_splits`);
3. the model trains on the training part for ``epochs`` epochs; after each, it is
   scored on the validation part, and the parameters of the best epoch (highest
   validation accuracy, ties to the lower validation loss) are kept;
4. only then is the test part evaluated, once; the figure reported is the mean
   and standard deviation of the ``folds`` test accuracies.

Everything is seeded from one ``seed``: the folds, and per fold the parameters,
the batch order and the dropout masks; two models given the same seed see the
same folds, splits and batch order.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch_geometric.data import Dataset
from torch_geometric.loader import DataLoader

from .graph_classifier import GraphClassifier, PoolConfig
from .progress import EpochProgress
from .splits import FoldSplit, cv_splits

__all__ = ["CVResult", "DEFAULT_DATASET", "DEFAULT_FOLDS", "FoldResult", "cross_validate",
           "train_fold"]

#: The data set and the number of folds of :func:`cross_validate` unless given.
DEFAULT_DATASET, DEFAULT_FOLDS = "MUTAG", 10


@dataclass
class FoldResult:
    """Outcome of one fold: the test accuracy of the epoch chosen on validation,
    and the model holding that epoch's parameters (in eval mode)."""

    test_accuracy: float
    val_accuracy: float
    best_epoch: int
    model: GraphClassifier = field(repr=False)


def _evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device
              ) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` over ``loader``."""
    model.eval()
    correct, loss, count = 0, 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = batch.to(device)
            logits = model(batch)
            loss += float(F.cross_entropy(logits, batch.y, reduction="sum"))
            correct += int((logits.argmax(dim=-1) == batch.y).sum())
            count += batch.num_graphs
    return correct / max(count, 1), loss / max(count, 1)


def train_fold(dataset: Dataset, split: FoldSplit, config: PoolConfig = PoolConfig(), *,
               seed: int = 0, device: str | torch.device = "cpu",
               progress: Callable[[int, float], None] | None = None) -> FoldResult:
    """Trains a fresh :class:`GraphClassifier` on one fold and tests the chosen epoch.

    The training loop sees only ``split.train`` (gradient steps) and ``split.val``
    (epoch selection); ``split.test`` is loaded after it has finished, into the
    parameters of the selected epoch, and evaluated once.

    Parameters
    ----------
    dataset : torch_geometric.data.Dataset
        A PyG graph data set (``x``, ``edge_index``, ``y``; ``edge_attr`` used
        when ``config.edge_features`` and the data set has some).
    split : FoldSplit
        The fold's indices, e.g. from :func:`cv_splits`.
    config : PoolConfig
        Model and training hyper-parameters.
    seed : int
        Seeds the parameters, batch order and dropout.
    device : str or torch.device
        Where to train.
    progress : callable, optional
        Called after every epoch with ``(epoch, val_accuracy)``.

    Returns
    -------
    FoldResult
        The fold's result, with the trained model.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`PoolConfig`.
    """
    if not isinstance(config, PoolConfig):
        raise TypeError(f"'config' must be a PoolConfig, got {type(config).__name__}")
    device = torch.device(device)
    torch.manual_seed(seed)
    edge_dim = dataset.num_edge_features if config.edge_features else 0
    model = GraphClassifier(dataset.num_features, dataset.num_classes, edge_dim or None,
                            config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(dataset[split.train], batch_size=config.batch_size, shuffle=True,
                              generator=generator)
    val_loader = DataLoader(dataset[split.val], batch_size=config.batch_size)

    best = (-1.0, -math.inf)  # (val accuracy, -val loss): compared lexicographically
    best_state, best_epoch = None, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch in train_loader:
            batch = batch.to(device)
            optimizer.zero_grad()
            F.cross_entropy(model(batch), batch.y).backward()
            optimizer.step()
        val_accuracy, val_loss = _evaluate(model, val_loader, device)
        if (val_accuracy, -val_loss) > best:
            best, best_epoch = (val_accuracy, -val_loss), epoch
            best_state = copy.deepcopy(model.state_dict())
        if progress is not None:
            progress(epoch, val_accuracy)

    assert best_state is not None
    model.load_state_dict(best_state)
    test_loader = DataLoader(dataset[split.test], batch_size=config.batch_size)
    test_accuracy, _ = _evaluate(model, test_loader, device)
    return FoldResult(test_accuracy, best[0], best_epoch, model)


@dataclass
class CVResult:
    """Cross-validation outcome: per-fold test accuracies and their summary.

    ``std`` is the sample standard deviation (``n - 1``) over folds; accuracies
    are fractions in [0, 1].
    """

    model: str
    accuracies: list[float]
    best_epochs: list[int]
    splits: list[FoldSplit] = field(repr=False)
    config: PoolConfig = field(repr=False)

    @property
    def mean(self) -> float:
        return float(torch.tensor(self.accuracies, dtype=torch.float64).mean())

    @property
    def std(self) -> float:
        values = torch.tensor(self.accuracies, dtype=torch.float64)
        return float(values.std()) if values.numel() > 1 else 0.0

    def summary(self) -> str:
        """One line: ``MODEL: test accuracy MEAN +- STD % over K folds``."""
        return (f"{self.model}: test accuracy {100 * self.mean:.2f} +- {100 * self.std:.2f} % "
                f"over {len(self.accuracies)} folds")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: model, config, per-fold accuracies and epochs, mean, std, test folds."""
        return {"model": self.model, "config": self.config.to_dict(),
                "accuracies": list(self.accuracies), "best_epochs": list(self.best_epochs),
                "mean": self.mean, "std": self.std,
                "test_folds": [split.test.tolist() for split in self.splits]}


def _report_epoch(progress: EpochProgress, epoch: int, val_accuracy: float) -> None:
    """``train_fold``'s per-epoch call, shown on ``progress``."""
    progress.update(val_acc=f"{val_accuracy:.3f}")


def cross_validate(dataset: str | Dataset = DEFAULT_DATASET, *,
                   root: str | None = None, folds: int = DEFAULT_FOLDS, seed: int = 0,
                   epochs: int | None = None,
                   device: str | torch.device = "cpu", progress: bool = True,
                   model: str | None = None, config: PoolConfig | None = None,
                   fold_ids: Sequence[int] | None = None) -> CVResult:
    """Stratified k-fold cross-validation of an attention-pooling graph classifier.

    See the module docstring for the protocol.  Two calls with the same data set,
    ``folds``, ``seed`` and ``config.val_fraction`` use the same splits, so models
    compare fold by fold.

    Parameters
    ----------
    dataset : str or torch_geometric.data.Dataset
        A data set name for :func:`pyg_attn.datasets.load_dataset`
        (``"MUTAG"`` is shipped) or a PyG graph data set.
    root : str, optional
        Data root passed to :func:`~pyg_attn.datasets.load_dataset`.
    folds : int
        Number of folds.
    seed : int
        Seeds the folds and every fold's training (fold ``k`` uses ``seed + k``).
    epochs : int, optional
        Overrides ``config.epochs``.
    device : str or torch.device
        Where to train.
    progress : bool
        Show each fold's progress on stderr: a bar on a terminal, else one line per
        epoch (:class:`~pyg_attn.training.progress.EpochProgress`).
    model : str, optional
        One of :data:`~pyg_attn.training.models.GRAPH_MODELS`, the model of the
        default configuration; with ``config``, only if it is ``config.model``.
    config : PoolConfig, optional
        Hyper-parameters (defaults of :class:`PoolConfig`, with ``model``).
    fold_ids : sequence of int, optional
        Run only these folds (e.g. ``[0]`` for a quick check); all when :obj:`None`.

    Returns
    -------
    CVResult
        ``accuracies``, ``mean``, ``std``, ``to_dict()``.

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`PoolConfig` or ``dataset`` neither a
        name nor a PyG data set.
    ValueError
        If the data set has not one label per graph, ``fold_ids`` holds a
        fold number out of range, or ``model`` is not ``config.model``.

    Examples
    --------
    >>> result = cross_validate("MUTAG", folds=10, epochs=1, progress=False,
    ...                         fold_ids=[0], config=PoolConfig(hidden=4, heads=1))
    >>> len(result.accuracies), 0.0 <= result.mean <= 1.0
    (1, True)
    """
    from ..datasets import load_dataset

    if config is None:
        config = PoolConfig() if model is None else PoolConfig(model=model)
    if not isinstance(config, PoolConfig):
        raise TypeError(f"'config' must be a PoolConfig, got {type(config).__name__}")
    if model is not None and model != config.model:
        raise ValueError(f"'model' {model!r} is not config.model {config.model!r}: give the "
                         "model in one place")
    if epochs is not None:
        config = PoolConfig(**{**config.to_dict(), "epochs": epochs})
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, root=root)
    elif not isinstance(dataset, Dataset):
        raise TypeError(f"'dataset' must be a data set name or a PyG Dataset, got "
                        f"{type(dataset).__name__}")
    labels = dataset.y.view(-1) if dataset.y is not None else None
    if labels is None or labels.numel() != len(dataset):
        raise ValueError("'dataset' must hold one label 'y' per graph")
    splits = cv_splits(labels, folds, seed, config.val_fraction)
    chosen = list(range(folds)) if fold_ids is None else list(fold_ids)
    for k in chosen:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < folds:
            raise ValueError(f"'fold_ids' must hold fold numbers in [0, {folds}), got {k!r}")

    accuracies, epochs_chosen = [], []
    for k in chosen:
        with EpochProgress(config.epochs, f"{config.model} fold {k + 1}/{folds}",
                           enabled=progress) as bar:
            result = train_fold(dataset, splits[k], config, seed=seed + k, device=device,
                                progress=partial(_report_epoch, bar))
        accuracies.append(result.test_accuracy)
        epochs_chosen.append(result.best_epoch)
    return CVResult(config.model, accuracies, epochs_chosen, [splits[k] for k in chosen], config)
