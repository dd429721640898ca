"""Reproduce GAT's Planetoid accuracy (Velickovic et al. 2018) and compare with PyG.

Trains every requested model on Cora and CiteSeer (public split) with the GAT
recipe of ``pyg-attn train`` (8 heads x 8 hidden, ELU, dropout 0.6, lr 0.005,
weight decay 5e-4, early stopping with patience 100 on validation loss and
accuracy, test accuracy of the kept model), for each seed in turn, and next to
it ``pyg-gat``: the model of PyG's ``examples/gat.py`` (``torch_geometric.nn.GATConv``,
same hyper-parameters) trained by the same loop with the same seed.  Seeds are
the outer loop (an interrupted run has every data set and model for the seeds
done) and the models of a seed run back to back, so their per-epoch times see
the same machine load.

Prints, per data set and model: test accuracy mean +- std over the seeds (sample
std), mean selected epoch, median milliseconds per epoch (training step +
evaluation), and the time ratio ``pyg-gat ms / model ms`` (> 1: faster than PyG).
Then a timing that is robust to a busy machine: all models trained side by side
for ``--timing-epochs`` epochs, their epochs alternating, median ms per epoch.

    PYTHONPATH=. python benchmarks/reproduce_planetoid.py                       # all, 10 seeds
    PYTHONPATH=. python benchmarks/reproduce_planetoid.py --models gat --seeds 3 --csv out/p.csv
    PYTHONPATH=. python benchmarks/reproduce_planetoid.py --summarize out/p.csv out/q.csv  # merge

Targets (mean of 10 seeds): Cora >= 82.0 %, CiteSeer >= 71.5 % with ``gat``
(paper: 83.0 +- 0.7 and 72.5 +- 0.7).
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from pyg_attn.training.metrics import summarize
from pyg_attn.training.models import NodeClassifier
from pyg_attn.training.node_classification import (EpochTrainer, TrainConfig, evaluate,
                                                   load_node_data, train_node_classification)

BASELINE = "pyg-gat"
MODELS = ["gat", "gatv2", "transformer", "kqv"]
DATASETS = ["Cora", "CiteSeer"]
FIELDS = ["dataset", "model", "seed", "test_acc", "val_acc", "best_epoch", "epochs",
          "ms_per_epoch"]


def run_one(dataset: str, model: str, seed: int, args: argparse.Namespace,
            scratch: Path) -> Dict[str, object]:
    """One seed of one model: its result row (``ms_per_epoch`` = median over epochs)."""
    config = TrainConfig(dataset=dataset, model=model, runs=1, seed=seed, epochs=args.epochs,
                         patience=args.patience, device=args.device,
                         out=str(scratch / f"{dataset}-{model}-{seed}"),
                         save_every=args.epochs, data_root=args.data_root)
    [result] = train_node_classification(config, progress=False)
    ms = statistics.median(1000 * (e.train_time_s + e.eval_time_s) for e in result.epochs)
    return {"dataset": dataset, "model": model, "seed": seed, "test_acc": result.test_acc,
            "val_acc": result.val_acc, "best_epoch": result.best_epoch,
            "epochs": len(result.epochs), "ms_per_epoch": ms}


def interleaved_ms(dataset: str, models: List[str], epochs: int,
                   args: argparse.Namespace) -> Dict[str, float]:
    """Median ms per epoch (training step + validation pass) of each model, the models'
    epochs alternating so that every model sees the same machine load."""
    config = TrainConfig(dataset=dataset, device=args.device, data_root=args.data_root)
    data, num_features, num_classes = load_node_data(dataset, args.data_root)
    data = data.to(args.device)
    trainer = EpochTrainer(config, data, data.train_mask.nonzero().view(-1),
                           torch.device(args.device))
    runs = {}
    for model in models:
        torch.manual_seed(0)
        net = NodeClassifier(num_features, num_classes,
                             TrainConfig(model=model).model_config()).to(args.device)
        runs[model] = (net, torch.optim.Adam(net.parameters(), lr=config.lr,
                                             weight_decay=config.weight_decay), [])
    for _ in range(epochs + 3):  # 3 warm-up epochs
        for net, optimizer, times in runs.values():
            tic = time.perf_counter()
            trainer.epoch(net, optimizer, lambda: None)
            evaluate(net, data, data.val_mask)
            times.append(1000 * (time.perf_counter() - tic))
    return {model: statistics.median(times[3:]) for model, (_, _, times) in runs.items()}


def table(rows: List[Dict[str, object]]) -> List[str]:
    """Summary lines, one per (data set, model)."""
    groups: Dict[Tuple[str, str], List[Dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["model"]), []).append(row)
    lines = [f"{'dataset':<9} {'model':<12} {'test accuracy %':>18} {'seeds':>5} "
             f"{'epoch':>6} {'ms/epoch':>9} {'vs ' + BASELINE:>11}"]
    for (dataset, model), group in groups.items():
        stats = summarize([float(r["test_acc"]) for r in group])
        ms = statistics.median(float(r["ms_per_epoch"]) for r in group)
        base = groups.get((dataset, BASELINE))
        ratio = (statistics.median(float(r["ms_per_epoch"]) for r in base) / ms
                 if base else float("nan"))
        epoch = statistics.mean(int(r["best_epoch"]) for r in group)
        lines.append(f"{dataset:<9} {model:<12} {100 * stats['mean']:>9.2f} +- "
                     f"{100 * stats['std']:<5.2f} {stats['runs']:>5} {epoch:>6.0f} "
                     f"{ms:>9.1f} {ratio:>10.2f}x")
    return lines


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="default: Cora CiteSeer")
    parser.add_argument("--models", nargs="+", default=MODELS,
                        help=f"models besides {BASELINE} (default: {' '.join(MODELS)})")
    parser.add_argument("--seeds", type=int, default=10,
                        help="number of seeds (default 10): first-seed .. first-seed + N - 1")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed (default 0); split a long job over processes")
    parser.add_argument("--epochs", type=int, default=1000, help="maximum epochs (default 1000)")
    parser.add_argument("--patience", type=int, default=100, help="early stopping (default 100)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-root", default=None, help="data root (default: shipped copies)")
    parser.add_argument("--no-baseline", action="store_true",
                        help=f"do not train {BASELINE} beside the models (timing still uses it)")
    parser.add_argument("--timing-epochs", type=int, default=50,
                        help="epochs of the interleaved timing per model (0: none; default 50)")
    parser.add_argument("--csv", type=Path, default=None, help="write every seed's row here")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="CSV",
                        help="train nothing: print the table of rows saved with --csv")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        rows = {(r["dataset"], r["model"], r["seed"]): r
                for path in reversed(args.summarize) for r in read_csv(path)}
        print("\n".join(table(list(rows.values()))))  # a seed run twice counts once
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    models = list(dict.fromkeys([*args.models, BASELINE]))
    trained = [m for m in models if not (args.no_baseline and m == BASELINE)]

    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="pyg_attn_planetoid_") as scratch:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for dataset in args.datasets:
                for model in trained:
                    row = run_one(dataset, model, seed, args, Path(scratch))
                    rows.append(row)
                    print(f"{dataset} {model} seed {seed}: test {100 * row['test_acc']:.1f} % "
                          f"(epoch {row['best_epoch']}/{row['epochs']}, "
                          f"{row['ms_per_epoch']:.1f} ms/epoch)", flush=True)
                    if args.csv is not None:
                        write_csv(args.csv, rows)
    print(f"\ntorch threads {torch.get_num_threads()}; ratio = {BASELINE} ms / model ms")
    if rows:
        print("\n".join(table(rows)))
    if args.timing_epochs > 0:
        print(f"\ninterleaved timing, median of {args.timing_epochs} epochs (training step + "
              "validation pass), the models' epochs alternating:")
        for dataset in args.datasets:
            ms = interleaved_ms(dataset, models, args.timing_epochs, args)
            print("  " + ", ".join(f"{dataset} {model} {value:.1f} ms "
                                   f"({ms[BASELINE] / value:.2f}x)"
                                   for model, value in ms.items()))
    return 0


def read_csv(path: Path) -> List[Dict[str, object]]:
    """Rows written by :func:`write_csv`."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, rows: List[Dict[str, object]]) -> None:
    """Every seed's row (rewritten after each, so an interrupted run keeps its results)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
