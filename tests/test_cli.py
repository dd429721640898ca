"""The ``pyg-attn`` command line: train, explain, bench (info/build-ext stay)."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyg_attn import cli
from pyg_attn.datasets import CACHE_ENV, DATA_ENV, PLANETOID_SPLITS
from pyg_attn.training.graph_classifier import PoolConfig

REPO = Path(__file__).resolve().parent.parent
TINY = ["--hidden", "2", "--heads", "2", "--no-progress"]


@pytest.fixture(autouse=True)
def data_env(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "cli_cache"))
    monkeypatch.delenv(DATA_ENV, raising=False)


def test_train_then_resume_then_explain(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--dataset", "Cora", "--model", "gat", "--runs", "2", "--epochs", "3",
            "--out", str(out), *TINY]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^test accuracy: \d+\.\d\d \+- \d+\.\d\d % over 2 runs$", printed, re.M)
    assert {"config.json", "metrics.json", "metrics.csv", "run0", "run1"} <= \
        {p.name for p in out.iterdir()}

    assert cli.main([*args, "--resume"]) == 0  # finished runs are read back
    assert printed.splitlines()[-2] == capsys.readouterr().out.splitlines()[-2]

    assert cli.main(["explain", "--checkpoint", str(out), "--node", "3",
                     "--out", str(tmp_path / "ex")]) == 0
    assert {p.name for p in (tmp_path / "ex").iterdir()} == {
        "attention.csv", "attention.json", "node3_attention.png", "node3_rollout.png"}


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "Cora", "--data-root", str(tmp_path), "--out",
                     str(tmp_path / "o"), *TINY]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli.main(["train", "--epochs", "0", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "'epochs'" in capsys.readouterr().err
    assert cli.main(["explain", "--checkpoint", str(tmp_path / "none")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert cli.main(["train", "--threads", "0", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "'threads'" in capsys.readouterr().err


def test_threads_reach_every_process(tmp_path, monkeypatch):
    import torch

    from pyg_attn.training import distributed
    from pyg_attn.training.metrics import RunResult

    launched, set_threads = [], []

    def fake_launch(train, config, **kwargs):
        launched.append((train.__name__, config.nprocs, kwargs["threads"], config.split))
        return [RunResult(0, 0, 1, 0.5, 1.0, 0.5)]

    monkeypatch.setattr(distributed, "launch", fake_launch)
    monkeypatch.setattr(torch, "set_num_threads", set_threads.append)
    args = ["train", "--epochs", "1", "--threads", "1", "--out", str(tmp_path), *TINY]
    assert cli.main([*args, "--nprocs", "2", "--split", "full"]) == 0
    assert launched == [("train_node_classification", 2, 1, "full")] and set_threads == []
    assert cli.main(args) == 0
    assert set_threads == [1]


def test_split_choices_are_the_data_sets_splits():
    """The command line spells the splits out (importing the data sets would slow
    every ``pyg-attn`` start-up); they must stay the library's."""
    parser = argparse.ArgumentParser()
    cli._train_arguments(parser)
    [split] = [a for a in parser._actions if a.dest == "split"]
    assert tuple(split.choices) == PLANETOID_SPLITS


def test_gat_pool_goes_to_cross_validation(tmp_path, monkeypatch, capsys):
    from pyg_attn.training import graph_classification

    calls = []

    class Result:
        accuracies, mean, std = [0.8, 0.9], 0.85, 0.0707

        def to_dict(self):
            return {"accuracies": self.accuracies}

    def fake(dataset, **kwargs):
        calls.append((dataset, kwargs))
        return Result()

    monkeypatch.setattr(graph_classification, "cross_validate", fake)
    assert cli.main(["train", "--model", "pyg-gat-pool", "--folds", "2", "--seed", "4",
                     "--lr", "0.01", "--hidden", "8", "--no-edge-features", "--max-degree",
                     "none", "--epochs", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    assert calls == [("MUTAG", {"folds": 2, "seed": 4, "progress": False,
                                "config": PoolConfig(model="pyg-gat-pool", lr=0.01, hidden=8,
                                                     edge_features=False, max_degree=None,
                                                     epochs=3)})]
    assert "test accuracy: 85.00 +- 7.07 % over 2 folds" in capsys.readouterr().out
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"accuracies": [0.8, 0.9]}


@pytest.mark.parametrize("model, flags, refused", [
    ("gat-pool", ["--runs", "3", "--lr", "0.1"], "--runs does not apply to --model gat-pool"),
    ("gat-pool", ["--resume", "--out-heads", "2"], "--resume, --out-heads do not apply"),
    ("gat", ["--folds", "3"], "--folds does not apply to --model gat (node classification)"),
    ("transformer", ["--layers", "2"], "--layers does not apply")])
def test_flags_a_model_does_not_read_are_refused(model, flags, refused, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--model", model, *flags])
    assert exit_.value.code == 2
    assert refused in capsys.readouterr().err


def test_train_flags_are_the_configurations_fields():
    """Every documented field of both configurations is a flag with the field's default
    and choices in its help; nothing is typed twice."""
    from dataclasses import fields

    from pyg_attn.training.models import DROPOUT_SCHEMES, GRAPH_MODELS, NODE_MODELS
    from pyg_attn.training.node_classification import TrainConfig

    parser = argparse.ArgumentParser()
    cli._train_arguments(parser)
    actions = {a.dest: a for a in parser._actions}
    for config in (TrainConfig, PoolConfig):
        assert {f.name for f in fields(config)} <= set(actions)
    assert tuple(actions["model"].choices) == NODE_MODELS + GRAPH_MODELS
    assert tuple(actions["dropout_scheme"].choices) == DROPOUT_SCHEMES
    assert "(default: 0.005)" in actions["lr"].help  # one default for both
    assert "node classification: maximum epochs per run (default: 1000)" in actions["epochs"].help
    assert "(default: 100)" in actions["epochs"].help  # PoolConfig's
    assert "0.58x" not in actions["nprocs"].help and "x (" not in actions["nprocs"].help


def test_bench_finds_the_scripts_and_passes_arguments():
    assert cli.benchmarks_dir() == REPO / "benchmarks"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "pyg_attn", "bench", "ops", "--help"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bench_ops.py" in result.stdout  # the script's own usage line


def test_bench_outside_a_checkout(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "pyg_attn" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYG_ATTN_BENCHMARKS", raising=False)
    assert cli.main(["bench", "layers"]) == 2
    assert "not installed with the package" in capsys.readouterr().err


def test_subcommands_listed():
    result = subprocess.run([sys.executable, "-m", "pyg_attn", "--help"], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert result.returncode == 0
    for command in ("info", "build-ext", "train", "explain", "bench"):
        assert command in result.stdout
