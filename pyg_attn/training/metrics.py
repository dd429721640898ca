"""Training metrics: per-epoch records, per-run results, JSON and CSV files.

``metrics.csv`` has one row per run and epoch (columns :data:`EPOCH_FIELDS`);
``metrics.json`` holds the configuration, every run's result with its epochs,
and the summary (mean and standard deviation of the test accuracy over runs).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

from .checkpoint import atomic_write

__all__ = ["EPOCH_FIELDS", "EpochRecord", "RunResult", "summarize", "write_metrics"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class EpochRecord:
    """What one epoch of one run measured.

    Attributes
    ----------
    run : int
        Run index (0-based); its seed is the base seed plus this.
    epoch : int
        Epoch number (1-based).
    train_loss, train_acc : float
        On this process's training nodes, in training mode (dropout on),
        averaged over mini-batches.
    val_loss, val_acc : float
        On the validation nodes, evaluation mode.
    train_time_s : float
        Seconds of the training step(s) of the epoch.
    eval_time_s : float
        Seconds of the evaluation.
    """

    run: int
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    train_time_s: float
    eval_time_s: float


#: Columns of ``metrics.csv``, in order.
EPOCH_FIELDS: list[str] = list(EpochRecord.__dataclass_fields__)


@dataclass
class RunResult:
    """One finished run: the selected epoch and its test accuracy.

    Attributes
    ----------
    run : int
        Run index.
    seed : int
        Its random seed.
    best_epoch : int
        The epoch selected on the validation set.
    val_acc, val_loss : float
        Validation metrics of that epoch.
    test_acc : float
        Test accuracy of the selected model (looked at once, at the end).
    epochs : list of EpochRecord
        Every epoch's :class:`EpochRecord`.
    """

    run: int
    seed: int
    best_epoch: int
    val_acc: float
    val_loss: float
    test_acc: float
    epochs: list[EpochRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (epochs as dicts)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["epochs"] = [EpochRecord(**e) for e in data.get("epochs", [])]
        return cls(**data)


def summarize(values: Sequence[float]) -> dict[str, float]:
    r"""Mean and sample standard deviation of ``values`` (0 for a single value).

    .. math::
        \bar v = \frac{1}{R}\sum_r v_r, \qquad
        s = \sqrt{\frac{1}{R-1}\sum_r (v_r - \bar v)^2}

    Examples
    --------
    >>> from pyg_attn.training.metrics import summarize
    >>> summarize([0.8, 0.82, 0.84])
    {'mean': 0.82, 'std': 0.02, 'runs': 3}

    Raises
    ------
    ValueError
        If ``values`` is empty.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("'values' must not be empty")
    mean = sum(values) / len(values)
    var = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": round(mean, 10), "std": round(math.sqrt(var), 10), "runs": len(values)}


def write_metrics(folder: PathLike, config: dict[str, Any],
                  results: Sequence[RunResult]) -> dict[str, Path]:
    """Writes ``metrics.json`` and ``metrics.csv`` into ``folder`` (atomically).

    Parameters
    ----------
    folder : str or os.PathLike
        Output folder (created if needed).
    config : dict
        The run configuration, stored in the JSON.
    results : sequence of RunResult
        Finished runs; the summary covers their test accuracies (omitted if none).

    Returns
    -------
    dict
        ``{"json": path, "csv": path}``.

    Examples
    --------
    >>> import tempfile
    >>> from pyg_attn.training.metrics import EpochRecord, RunResult, write_metrics
    >>> epoch = EpochRecord(0, 1, 1.9, 0.3, 1.8, 0.4, 0.05, 0.01)
    >>> paths = write_metrics(tempfile.mkdtemp(), {"model": "gat"},
    ...                       [RunResult(0, 0, 1, 0.4, 1.8, 0.41, [epoch])])
    >>> paths["csv"].read_text().splitlines()[0]
    'run,epoch,train_loss,train_acc,val_loss,val_acc,train_time_s,eval_time_s'
    >>> len(paths["csv"].read_text().splitlines())
    2
    """
    folder = Path(folder)
    payload: dict[str, Any] = {"config": config, "runs": [r.to_dict() for r in results]}
    if results:
        payload["summary"] = {"test_acc": summarize([r.test_acc for r in results])}
    text = json.dumps(payload, indent=2) + "\n"
    json_path = atomic_write(folder / "metrics.json", lambda h: h.write(text), binary=False)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EPOCH_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerows(asdict(e) for e in result.epochs)
    table = buffer.getvalue()
    csv_path = atomic_write(folder / "metrics.csv", lambda h: h.write(table), binary=False)
    return {"json": json_path, "csv": csv_path}
