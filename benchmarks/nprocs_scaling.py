"""Data-parallel scaling of mini-batch training: 1 process x 1 thread against 2 x 1.

Runs ``pyg-attn train --loader neighbor`` (the command line, one subprocess per
run) for a fixed number of epochs (``--patience`` = ``--epochs``, so no run stops
early) once with ``--nprocs 1`` and once with ``--nprocs 2``, both with
``--threads 1`` and ``OMP_NUM_THREADS=1``, with the same seed, for every data set,
split, batch size and seed asked for: the public split (``--public-batch-sizes``;
Cora has 140 training nodes, CiteSeer 120) and the full one
(``--full-batch-sizes``; 1,208 and 1,827), since a process's share of 140 nodes
is a batch or two and leaves little to split.  The two configurations of a seed
run back to back (alternating which goes first), so they see the same machine load.

Epoch time is rank 0's training plus evaluation time of each epoch, as
``metrics.json`` records it (checkpoint writes excluded), median over the
epochs after the first; a configuration's figure is the median over its seeds.
The ratio is 2x1 / 1x1 (below 1: the two processes finish an epoch sooner).
Test accuracy is the kept model's (best validation epoch), mean over the seeds.
``--batch-size`` is per process, as in ``pyg-attn train``: two processes take
twice the seed nodes per optimiser step and half the steps per epoch.

    PYTHONPATH=. python benchmarks/nprocs_scaling.py                     # Cora and CiteSeer
    PYTHONPATH=. python benchmarks/nprocs_scaling.py --datasets Cora --seeds 1 --epochs 20 \\
        --results out/nprocs.md
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from reproduce_planetoid import provenance

from pyg_attn.training.node_classification import load_node_data

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = (1, 2)  # processes, one thread each
FIELDS = ["dataset", "split", "batch_size", "seed", "nprocs", "train_ms", "eval_ms", "epoch_ms",
          "test_acc", "wall_s"]


def train_once(dataset: str, split: str, batch_size: int, seed: int, nprocs: int,
               args: argparse.Namespace, folder: Path) -> Dict[str, object]:
    """One ``pyg-attn train`` run; its per-epoch times (ms, medians) and test accuracy."""
    out = folder / f"{dataset}-{split}-b{batch_size}-s{seed}-p{nprocs}"
    command = [sys.executable, "-m", "pyg_attn", "train", "--dataset", dataset, "--split", split,
               "--model", args.model, "--loader", "neighbor",
               "--num-neighbors", *map(str, args.num_neighbors),
               "--batch-size", str(batch_size), "--epochs", str(args.epochs),
               "--patience", str(args.epochs), "--seed", str(seed), "--nprocs", str(nprocs),
               "--threads", "1", "--no-progress", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    tic = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - tic
    run = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["runs"][0]
    epochs = run["epochs"][1:]

    def median_ms(*keys: str) -> float:
        return 1e3 * statistics.median(sum(e[k] for k in keys) for e in epochs)

    return {"dataset": dataset, "split": split, "batch_size": batch_size, "seed": seed,
            "nprocs": nprocs,
            "train_ms": median_ms("train_time_s"), "eval_ms": median_ms("eval_time_s"),
            "epoch_ms": median_ms("train_time_s", "eval_time_s"),
            "test_acc": run["test_acc"], "wall_s": wall}


def steps_per_epoch(dataset: str, split: str, batch_size: int, nprocs: int) -> int:
    """Optimiser steps per epoch: batches of this process's equal shard of the training nodes."""
    data, _, _ = load_node_data(dataset, split=split)
    shard = int(data.train_mask.sum()) // nprocs
    return math.ceil(shard / batch_size)


def summary(rows: List[Dict[str, object]]) -> List[str]:
    """Markdown table: per data set, split and batch size, both configurations side by side."""
    lines = ["| data set | split | batch size | steps/epoch 1x1, 2x1 | "
             "epoch ms 1x1 (train + eval) | epoch ms 2x1 (train + eval) | ratio 2x1 / 1x1 | test acc 1x1 | test acc 2x1 | "
             "seeds |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = dict.fromkeys((r["dataset"], r["split"], r["batch_size"]) for r in rows)
    for dataset, split, batch_size in keys:
        figures = {}
        for nprocs in CONFIGS:
            mine = [r for r in rows if (r["dataset"], r["split"], r["batch_size"], r["nprocs"])
                    == (dataset, split, batch_size, nprocs)]
            figures[nprocs] = {field: statistics.median(r[field] for r in mine)
                               for field in ("train_ms", "eval_ms", "epoch_ms")}
            figures[nprocs]["acc"] = 100 * statistics.mean(r["test_acc"] for r in mine)
            figures[nprocs]["seeds"] = len(mine)
        one, two = figures[1], figures[2]
        steps = ", ".join(str(steps_per_epoch(dataset, split, batch_size, n)) for n in CONFIGS)
        cells = [f"{f['epoch_ms']:.1f} ({f['train_ms']:.1f} + {f['eval_ms']:.1f})"
                 for f in (one, two)]
        lines.append(f"| {dataset} | {split} | {batch_size} | {steps} | {cells[0]} | {cells[1]} | "
                     f"{two['epoch_ms'] / one['epoch_ms']:.2f}x | {one['acc']:.1f} | "
                     f"{two['acc']:.1f} | {one['seeds']} |")
    return lines


def report(rows: List[Dict[str, object]], source: Dict[str, str]) -> str:
    """The markdown report: how it was run, the summary table and every run."""
    lines = ["# Data-parallel mini-batch training on CPU: 1 process x 1 thread vs 2 x 1", "",
             "Written by `benchmarks/nprocs_scaling.py`: `pyg-attn train --loader neighbor` "
             "with `--nprocs 1` and `--nprocs 2`, `--threads 1` and `OMP_NUM_THREADS=1` in "
             "both, the same seeds, a fixed number of epochs.  Epoch ms: rank 0's training "
             "plus evaluation time per epoch, median over the epochs after the first, then "
             "over the seeds.  `--batch-size` is per process, so two processes take half "
             "the optimiser steps per epoch (each on twice the seed nodes in all).  Test "
             "accuracy: mean over the seeds, %.", ""]
    lines += [f"- {key}: `{value}`" for key, value in source.items()]
    lines += ["", *summary(rows), "", "Every run:", "",
              "| " + " | ".join(FIELDS) + " |", "| " + " | ".join("---" for _ in FIELDS) + " |"]
    lines += ["| " + " | ".join(f"{r[f]:.4g}" if isinstance(r[f], float) else str(r[f])
                                for f in FIELDS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["Cora", "CiteSeer"])
    parser.add_argument("--public-batch-sizes", type=int, nargs="*", default=[512, 32],
                        help="seed nodes per mini-batch and process, public split")
    parser.add_argument("--full-batch-sizes", type=int, nargs="*", default=[128],
                        help="seed nodes per mini-batch and process, full split")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--model", default="gat")
    parser.add_argument("--num-neighbors", type=int, nargs="+", default=[10, 10])
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks" / "results" / "nprocs-neighbor-cpu.md")
    args = parser.parse_args(argv)

    source = provenance(argv)
    source["command"] = "PYTHONPATH=. python benchmarks/nprocs_scaling.py " + shlex.join(argv)
    source["threads"] = "1 per process (--threads 1, OMP_NUM_THREADS=1), 1x1 and 2x1"
    rows = []
    with tempfile.TemporaryDirectory(prefix="nprocs_scaling_") as folder:
        plan = [("public", b) for b in args.public_batch_sizes] + \
            [("full", b) for b in args.full_batch_sizes]
        for dataset, (split, batch_size) in itertools.product(args.datasets, plan):
            for seed in range(args.seeds):
                order = CONFIGS if seed % 2 == 0 else CONFIGS[::-1]
                for nprocs in order:
                    row = train_once(dataset, split, batch_size, seed, nprocs, args,
                                     Path(folder))
                    rows.append(row)
                    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in row.items()), flush=True)
    rows.sort(key=lambda r: (args.datasets.index(r["dataset"]), r["split"] == "full",
                             r["batch_size"], r["seed"], r["nprocs"]))
    text = report(rows, source)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
