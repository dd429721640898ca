"""Reproduce GAT's Planetoid accuracy (Velickovic et al. 2018) and compare with PyG.

Trains every requested model on Cora and CiteSeer (public split) with the GAT
recipe of ``pyg-attn train`` (8 heads x 8 hidden, ELU, dropout 0.6, lr 0.005,
weight decay 5e-4, early stopping with patience 100 on validation loss and
accuracy, test accuracy of the kept model), for each seed in turn, and next to
it ``pyg-gat``: the model of PyG's ``examples/gat.py`` (``torch_geometric.nn.GATConv``,
same hyper-parameters) trained by the same loop with the same seed.  Each model
trains under every ``--schemes`` dropout scheme it takes: ``shared`` (PyG's
``examples/gat.py``: one input mask per layer) for all, ``per_head`` (the paper's
reference code: per-head input masks, projected features dropped too) for
``gat`` and ``pyg-gat`` only, so both sides are compared under the same
scheme.  Seeds are the outer loop (an interrupted run has every data set and model for the seeds
done) and the models of a seed run back to back, so their per-epoch times see
the same machine load.

Prints, per data set, model and scheme: test accuracy mean +- std over the seeds
(sample std) and its standard error std / sqrt(seeds), mean selected epoch, median milliseconds per epoch (training step +
evaluation), and the time ratio ``pyg-gat ms / model ms`` (same scheme; > 1:
faster than PyG).  ``--csv`` keeps every seed's row, headed by ``#`` lines naming
the machine, versions, command and commit; ``--results`` writes the same as a
markdown report (the source of the README's accuracy table).
Then a timing that is robust to a busy machine: all models trained side by side
for ``--timing-epochs`` epochs, their epochs alternating, median ms per epoch.

    PYTHONPATH=. python benchmarks/reproduce_planetoid.py                       # all, 10 seeds
    PYTHONPATH=. python benchmarks/reproduce_planetoid.py --models gat --seeds 3 --csv out/p.csv
    PYTHONPATH=. python benchmarks/reproduce_planetoid.py --summarize out/p.csv out/q.csv \
        --results benchmarks/results/planetoid-cpu.md --readme README.md         # merge

Targets (mean of 10 seeds): Cora >= 82.0 %, CiteSeer >= 71.5 % with ``gat``
(paper: 83.0 +- 0.7 and 72.5 +- 0.7).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch_geometric

import pyg_attn
from pyg_attn.training.metrics import summarize
from pyg_attn.training.models import DROPOUT_SCHEMES, PER_HEAD_MODELS, NodeClassifier
from pyg_attn.training.node_classification import (EpochTrainer, TrainConfig, evaluate,
                                                   load_node_data, train_node_classification)
from pyg_attn.training.shard import Shard

BASELINE = "pyg-gat"
MODELS = ["gat", "gatv2", "transformer", "kqv"]
DATASETS = ["Cora", "CiteSeer"]
SCHEMES = list(DROPOUT_SCHEMES)
FIELDS = ["dataset", "model", "scheme", "seed", "test_acc", "val_acc", "best_epoch", "epochs",
          "ms_per_epoch"]
Row = Dict[str, object]
#: Lines around the README's accuracy table (``--readme``).
README_START, README_END = "<!-- planetoid-accuracy", "<!-- /planetoid-accuracy -->"


def run_one(dataset: str, model: str, scheme: str, seed: int, args: argparse.Namespace,
            scratch: Path) -> Row:
    """One seed of one model under one dropout scheme: its result row
    (``ms_per_epoch`` = median over epochs)."""
    config = TrainConfig(dataset=dataset, model=model, runs=1, seed=seed, epochs=args.epochs,
                         patience=args.patience, device=args.device, dropout_scheme=scheme,
                         out=str(scratch / f"{dataset}-{model}-{scheme}-{seed}"),
                         save_every=args.epochs, data_root=args.data_root)
    [result] = train_node_classification(config, progress=False)
    ms = statistics.median(1000 * (e.train_time_s + e.eval_time_s) for e in result.epochs)
    return {"dataset": dataset, "model": model, "scheme": scheme, "seed": seed,
            "test_acc": result.test_acc,
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
            trainer.epoch(net, optimizer, Shard.single())
            evaluate(net, data, data.val_mask)
            times.append(1000 * (time.perf_counter() - tic))
    return {model: statistics.median(times[3:]) for model, (_, _, times) in runs.items()}


def group_rows(rows: List[Row]) -> Dict[Tuple[str, str, str], List[Row]]:
    """Rows by (data set, model, scheme), in first-seen order."""
    groups: Dict[Tuple[str, str, str], List[Row]] = {}
    for row in rows:
        groups.setdefault((str(row["dataset"]), str(row["model"]), str(row["scheme"])),
                          []).append(row)
    return groups


def accuracy(group: List[Row]) -> Tuple[float, float, float, int]:
    r"""Test accuracy in % over a group's seeds: ``(mean, std, se, seeds)`` with the
    sample std and the standard error :math:`\mathrm{se} = \mathrm{std} / \sqrt{n}`."""
    stats = summarize([float(r["test_acc"]) for r in group])
    runs = int(stats["runs"])
    return 100 * stats["mean"], 100 * stats["std"], 100 * stats["std"] / math.sqrt(runs), runs


def table(rows: List[Row]) -> List[str]:
    """Summary lines, one per (data set, model, scheme)."""
    groups = group_rows(rows)
    lines = [f"{'dataset':<9} {'model':<12} {'scheme':<8} {'test accuracy %':>18} "
             f"{'se':>5} {'seeds':>5} {'epoch':>6} {'ms/epoch':>9} {'vs ' + BASELINE:>11}"]
    for (dataset, model, scheme), group in groups.items():
        mean, std, se, runs = accuracy(group)
        ms = statistics.median(float(r["ms_per_epoch"]) for r in group)
        base = groups.get((dataset, BASELINE, scheme))
        ratio = (statistics.median(float(r["ms_per_epoch"]) for r in base) / ms
                 if base else float("nan"))
        epoch = statistics.mean(int(r["best_epoch"]) for r in group)
        lines.append(f"{dataset:<9} {model:<12} {scheme:<8} {mean:>9.2f} +- {std:<5.2f} "
                     f"{se:>5.2f} {runs:>5} {epoch:>6.0f} {ms:>9.1f} {ratio:>10.2f}x")
    return lines


def provenance(argv: List[str]) -> Dict[str, str]:
    """Machine, versions, command and commit of this run (``-dirty``: uncommitted
    changes to the package or the benchmark scripts; result files do not count)."""
    root = Path(__file__).resolve().parents[1]

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "unknown"

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "pyg_attn", "benchmarks",
                ":!benchmarks/results")
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {
        "machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
                    f"torch_geometric {torch_geometric.__version__}, "
                    f"pyg_attn {pyg_attn.__version__}",
        "command": "python benchmarks/reproduce_planetoid.py " + shlex.join(argv),
        "commit": git("rev-parse", "HEAD") + ("-dirty" if dirty not in ("", "unknown") else ""),
        "threads": str(torch.get_num_threads()),
    }


def report(rows: List[Row], sources: List[Dict[str, str]]) -> str:
    """Markdown report: how the runs were made, the like-for-like accuracy table
    (ours against the PyG twin under each scheme, mean +- se) and every seed."""
    groups = group_rows(rows)
    lines = ["# Planetoid accuracy: pyg_attn against the PyG twin, like for like", "",
             "Written by `benchmarks/reproduce_planetoid.py`; test accuracy of the model kept "
             "by early stopping, public split.  The table compares each model with the PyG "
             "twin over the seeds both finished.  `ms_per_epoch` times each run under "
             "whatever load the machine had: quote the interleaved timing for speed.", ""]
    for number, source in enumerate(sources, 1):
        lines.append(f"Run {number}:")
        lines += [f"- {key}: `{value}`" for key, value in source.items()]
        lines.append("")
    lines += ["Mean +- standard error (std / sqrt(seeds)) in %, std and seeds in brackets:", ""]
    lines += accuracy_table(groups)
    lines += ["", "Every seed:", "", "| " + " | ".join(FIELDS) + " |",
              "| " + " | ".join("---" for _ in FIELDS) + " |"]
    lines += ["| " + " | ".join(figure(row[field]) for field in FIELDS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def figure(value: object) -> str:
    """A row's value for the report: fractions and times rounded, the rest as is."""
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    return str(value) if number.is_integer() else f"{number:.4g}"


def accuracy_table(groups: Dict[Tuple[str, str, str], List[Row]]) -> List[str]:
    """Markdown table: each model against the PyG twin under the same scheme, both
    over the seeds that both have finished."""
    lines = ["| data set | scheme | model | test accuracy | PyG twin (`pyg-gat`) |",
             "| --- | --- | --- | --- | --- |"]
    for (dataset, model, scheme), group in groups.items():
        if model == BASELINE:
            continue
        base = groups.get((dataset, BASELINE, scheme), [])
        common = {str(r["seed"]) for r in group} & {str(r["seed"]) for r in base}
        if not common:
            lines.append(f"| {dataset} | {scheme} | {model} | {cell(group)} | not run |")
            continue
        ours, twin = ([r for r in rows if str(r["seed"]) in common] for rows in (group, base))
        lines.append(f"| {dataset} | {scheme} | {model} | {cell(ours)} | {cell(twin)} |")
    return lines


def update_readme(path: Path, rows: List[Row]) -> None:
    """Replaces the table between the README's ``<!-- planetoid-accuracy ... -->`` and
    ``<!-- /planetoid-accuracy -->`` lines with :func:`accuracy_table` of ``rows``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith(README_START)]
    ends = [n for n, line in enumerate(lines) if line.startswith(README_END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(f"'--readme' {path} needs one '{README_START} ...' line and one "
                         f"'{README_END}' line after it")
    lines[starts[0] + 1:ends[0]] = accuracy_table(group_rows(rows))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def cell(group: List[Row]) -> str:
    """``mean +- se (std s, n seeds)`` of a group's test accuracy in %."""
    mean, std, se, runs = accuracy(group)
    return f"{mean:.2f} +- {se:.2f} (std {std:.2f}, {runs} seeds)"


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="default: Cora CiteSeer")
    parser.add_argument("--models", nargs="+", default=MODELS,
                        help=f"models besides {BASELINE} (default: {' '.join(MODELS)})")
    parser.add_argument("--schemes", nargs="+", default=SCHEMES, choices=SCHEMES,
                        help=f"dropout schemes (default: {' '.join(SCHEMES)}); 'per_head' applies "
                             f"to {' and '.join(PER_HEAD_MODELS)} only")
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
    parser.add_argument("--results", type=Path, default=None, metavar="MD",
                        help="write the markdown report here (rewritten after every seed)")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="CSV",
                        help="train nothing: print (and with --results write) the table of "
                             "rows saved with --csv")
    parser.add_argument("--readme", type=Path, default=None, metavar="MD",
                        help="with --summarize: rewrite the accuracy table of this README")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        return summarize_files(args.summarize, args.results, args.readme)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    source = provenance(sys.argv[1:] if argv is None else argv)
    models = list(dict.fromkeys([*args.models, BASELINE]))
    trained = [(model, scheme) for model in models for scheme in args.schemes
               if not (args.no_baseline and model == BASELINE)
               and (scheme == "shared" or model in PER_HEAD_MODELS)]

    rows: List[Row] = []
    with tempfile.TemporaryDirectory(prefix="pyg_attn_planetoid_") as scratch:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for dataset in args.datasets:
                for model, scheme in trained:
                    row = run_one(dataset, model, scheme, seed, args, Path(scratch))
                    rows.append(row)
                    print(f"{dataset} {model} {scheme} seed {seed}: test "
                          f"{100 * row['test_acc']:.1f} % (epoch {row['best_epoch']}/"
                          f"{row['epochs']}, {row['ms_per_epoch']:.1f} ms/epoch)", flush=True)
                    if args.csv is not None:
                        write_csv(args.csv, rows, source)
                    if args.results is not None:
                        write_text(args.results, report(rows, [source]))
    print(f"\ntorch threads {torch.get_num_threads()}; ratio = {BASELINE} ms / model ms "
          "(same scheme)")
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


def summarize_files(paths: List[Path], results: Path | None, readme: Path | None) -> int:
    """``--summarize``: the table of saved rows (a seed saved twice counts once, the
    first file wins), written as a report too when ``results`` is given and into
    the accuracy table of ``readme`` when that is given."""
    rows: Dict[Tuple[str, ...], Row] = {}
    sources = []
    for path in reversed(paths):
        source, saved = read_csv(path)
        sources.insert(0, source)
        rows.update({(str(r["dataset"]), str(r["model"]), str(r["scheme"]), str(r["seed"])): r
                     for r in saved})
    print("\n".join(table(list(rows.values()))))
    if results is not None:
        write_text(results, report(list(rows.values()), sources))
    if readme is not None:
        update_readme(readme, list(rows.values()))
    return 0


def read_csv(path: Path) -> Tuple[Dict[str, str], List[Row]]:
    """``(provenance, rows)`` written by :func:`write_csv` (rows without a scheme column,
    from before schemes were recorded, read as ``shared``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    source = dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    for row in rows:
        row.setdefault("scheme", "shared")
    return source, rows


def write_csv(path: Path, rows: List[Row], source: Dict[str, str]) -> None:
    """Every seed's row, after ``# key: value`` lines of provenance (rewritten after
    each row, so an interrupted run keeps its results)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        handle.writelines(f"# {key}: {value}\n" for key, value in source.items())
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def write_text(path: Path, text: str) -> None:
    """``text`` into ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
