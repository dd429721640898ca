"""Stratified k-fold cross-validation splits of a graph data set.

The graphs are split into ``folds`` stratified folds (class proportions kept,
sizes within one graph of each other) by a seeded shuffle
(:func:`stratified_folds`); in fold ``k`` the test part is fold ``k`` and, from
the rest, a stratified ``val_fraction`` becomes the validation part
(:func:`cv_splits`).  The test part never overlaps the other two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .checks import fraction

__all__ = ["FoldSplit", "cv_splits", "stratified_folds"]


def _check_labels(labels: Any) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point or \
            labels.dtype == torch.bool:
        raise TypeError(f"'labels' must be an integer tensor, got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if labels.dim() != 1:
        raise ValueError(f"'labels' must be 1-dimensional [G], got shape {list(labels.shape)}")
    return labels.cpu()


def _shuffled_by_class(labels: Tensor, candidates: Tensor,
                       generator: torch.Generator) -> list[Tensor]:
    """The ``candidates`` of each class (in class order), each shuffled."""
    groups = []
    for cls in torch.unique(labels[candidates]).tolist():
        members = candidates[labels[candidates] == cls]
        groups.append(members[torch.randperm(members.numel(), generator=generator)])
    return groups


def stratified_folds(labels: Tensor, folds: int = 10, seed: int = 0) -> list[Tensor]:
    """Splits graph indices into ``folds`` disjoint, class-stratified test folds.

    The indices of each class are shuffled (a ``torch.Generator`` seeded with
    ``seed``), the classes are laid end to end and position ``p`` of that list goes
    to fold ``p mod folds``.  So every class is spread over the folds as evenly as
    possible, fold sizes differ by at most one, and the folds cover every index
    exactly once.

    Parameters
    ----------
    labels : Tensor
        ``[G]`` integer class of each graph.
    folds : int
        Number of folds, at least 2 and at most ``G``.
    seed : int
        Seed of the shuffle.

    Returns
    -------
    list of Tensor
        ``folds`` sorted index tensors.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer tensor.
    ValueError
        If ``labels`` is not 1-dimensional or ``folds`` is out of range.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    >>> parts = stratified_folds(labels, folds=2, seed=0)
    >>> [labels[p].tolist() for p in parts]
    [[0, 0, 1, 1], [0, 0, 1, 1]]
    >>> sorted(torch.cat(parts).tolist()) == list(range(8))
    True
    """
    labels = _check_labels(labels)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= labels.numel():
        raise ValueError(f"'folds' must be an int in [2, {labels.numel()}] (the number of "
                         f"graphs), got {folds!r}")
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.cat(_shuffled_by_class(labels, torch.arange(labels.numel()), generator))
    fold_of = torch.arange(order.numel()) % folds
    return [order[fold_of == k].sort().values for k in range(folds)]


@dataclass(frozen=True)
class FoldSplit:
    """Graph indices of one cross-validation fold (disjoint, together all graphs)."""

    train: Tensor
    val: Tensor
    test: Tensor


def cv_splits(labels: Tensor, folds: int = 10, seed: int = 0,
              val_fraction: float = 0.1) -> list[FoldSplit]:
    """Train / validation / test indices of every fold of stratified k-fold CV.

    Fold ``k``'s test part is ``stratified_folds(labels, folds, seed)[k]``; from the
    remaining graphs, ``round(val_fraction * n_c)`` of each class ``c`` (``n_c`` of
    them; at least one while ``n_c >= 2``) are drawn at random for validation, the
    rest is for training.  The test part never overlaps the other two.

    Parameters
    ----------
    labels : Tensor
        ``[G]`` integer class of each graph.
    folds : int
        Number of folds.
    seed : int
        Seed of the folds and of the validation draws.
    val_fraction : float
        Share of each class of the training part used for validation, in (0, 1).

    Returns
    -------
    list of FoldSplit
        One per fold, with sorted index tensors.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([0] * 10 + [1] * 10)
    >>> split = cv_splits(labels, folds=5, seed=0, val_fraction=0.25)[0]
    >>> len(split.train), len(split.val), len(split.test)
    (12, 4, 4)
    >>> labels[split.val].tolist()
    [0, 0, 1, 1]
    """
    fraction("val_fraction", val_fraction, low_open=True)
    labels = _check_labels(labels)
    tests = stratified_folds(labels, folds, seed)
    generator = torch.Generator().manual_seed(int(seed) + 1)
    splits = []
    for test in tests:
        rest = torch.ones(labels.numel(), dtype=torch.bool)
        rest[test] = False
        train, val = [], []
        for members in _shuffled_by_class(labels, rest.nonzero().view(-1), generator):
            take = max(1, round(val_fraction * members.numel())) if members.numel() >= 2 else 0
            val.append(members[:take])
            train.append(members[take:])
        splits.append(FoldSplit(torch.cat(train).sort().values, torch.cat(val).sort().values,
                                test))
    return splits

