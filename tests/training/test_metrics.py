"""Per-run and per-epoch metrics files."""
from __future__ import annotations

import csv
import json
import statistics

import pytest

from pyg_attn.training.metrics import (EPOCH_FIELDS, EpochRecord, RunResult, summarize,
                                       write_metrics)


def result(run, epochs, test_acc):
    return RunResult(run, 10 + run, 1, 0.5, 1.0, test_acc,
                     [EpochRecord(run, e, 1.0 / e, 0.5, 1.1, 0.4, 0.01, 0.002)
                      for e in range(1, epochs + 1)])


def test_summarize_matches_statistics():
    values = [0.81, 0.835, 0.79, 0.84]
    stats = summarize(values)
    assert stats["mean"] == pytest.approx(statistics.mean(values))
    assert stats["std"] == pytest.approx(statistics.stdev(values))
    assert summarize([0.5]) == {"mean": 0.5, "std": 0.0, "runs": 1}
    with pytest.raises(ValueError, match="values"):
        summarize([])


def test_files(tmp_path):
    results = [result(0, 3, 0.8), result(1, 2, 0.9)]
    paths = write_metrics(tmp_path, {"model": "gat"}, results)
    with open(paths["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == EPOCH_FIELDS
    assert [(r["run"], r["epoch"]) for r in rows] == [("0", "1"), ("0", "2"), ("0", "3"),
                                                      ("1", "1"), ("1", "2")]
    data = json.loads(paths["json"].read_text())
    assert data["config"] == {"model": "gat"}
    assert data["summary"]["test_acc"]["mean"] == pytest.approx(0.85)
    assert [RunResult.from_dict(r) for r in data["runs"]] == results


def test_no_runs_yet(tmp_path):
    paths = write_metrics(tmp_path, {}, [])
    assert "summary" not in json.loads(paths["json"].read_text())
    assert paths["csv"].read_text().splitlines() == [",".join(EPOCH_FIELDS)]
