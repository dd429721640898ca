"""The ``pyg-attn`` command line (also ``python -m pyg_attn``).

Subcommands:

* ``info``: versions and which attention backends are usable here.
* ``build-ext``: compile the fused CPU kernel now (it is otherwise built on
  first use); exits non-zero if it cannot be built.
* ``train``: node classification with the GAT recipe (Cora, CiteSeer, ...;
  ``--model gat|gatv2|transformer|kqv``), or graph classification with
  attention pooling (``--dataset MUTAG --model gat-pool``, 10-fold
  cross-validation); checkpoints, metrics and config go to ``--out``.
* ``explain``: a trained checkpoint's attention, all layers, as CSV/JSON, and
  pictures of one node's attention neighbourhood and rollout (``--html``: an
  interactive explorer page too).
* ``bench``: the benchmark scripts of the source tree (``ops``, ``layers``,
  ``products-memory``, ``planetoid``, ``mutag``, ``swapped-imports``), arguments
  passed through.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

#: ``pyg-attn bench`` targets -> script in the repository's ``benchmarks/`` folder.
BENCHMARKS = {"ops": "bench_ops.py", "layers": "bench_layers.py",
              "products-memory": "products_memory.py", "planetoid": "reproduce_planetoid.py",
              "mutag": "reproduce_mutag.py", "swapped-imports": "swapped_imports.py",
              "workloads": "bench_workloads.py", "gpu": "bench_gpu.py",
              "nprocs": "nprocs_scaling.py"}
_NODE_MODELS = ("gat", "gatv2", "transformer", "kqv", "pyg-gat", "pyg-gatv2",
                "pyg-transformer")


def _subcommand(commands: argparse._SubParsersAction, name: str,
                run: Callable[[argparse.Namespace], int], help: str,
                description: Optional[str] = None) -> argparse.ArgumentParser:
    """Adds subcommand ``name``, which calls ``run(args)``; returns its parser."""
    parser = commands.add_parser(name, help=help, description=description)
    parser.set_defaults(run=run)
    return parser


def _info(_: argparse.Namespace) -> int:
    import torch
    import torch_geometric

    from . import __version__
    from .ops.cpu import load_extension

    print(f"pyg_attn {__version__}, torch {torch.__version__}, "
          f"torch_geometric {torch_geometric.__version__}")
    print(f"fused CPU kernel: {'available' if load_extension() is not None else 'unavailable'}")
    print(f"CUDA: {'available' if torch.cuda.is_available() else 'unavailable'}")
    return 0


def _build_ext(_: argparse.Namespace) -> int:
    from .ops.cpu import load_extension

    module = load_extension()
    if module is None:
        print("the fused CPU kernel could not be built; the reference backend will be used",
              file=sys.stderr)
        return 1
    print(f"fused CPU kernel ready: {module.__file__}")
    return 0


# ----------------------------------------------------------------------------- train
def _default_out(args: argparse.Namespace) -> Path:
    return args.out if args.out is not None else Path("out") / f"{args.dataset}-{args.model}"


def _train_graph_classification(args: argparse.Namespace) -> int:
    from .training.checkpoint import atomic_write
    from .training.graph_classification import cross_validate

    kwargs = {"root": None if args.data_root is None else str(args.data_root),
              "folds": args.folds, "seed": args.seed, "device": args.device,
              "progress": not args.no_progress}
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    result = cross_validate(args.dataset, **kwargs)
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    path = atomic_write(_default_out(args) / "metrics.json", lambda h: h.write(text),
                        binary=False)
    print(f"test accuracy: {100 * result.mean:.2f} +- {100 * result.std:.2f} % over "
          f"{len(result.accuracies)} folds")
    print(f"per-fold results in {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.model == "gat-pool":
        return _train_graph_classification(args)
    from .training.checks import positive_int
    from .training.node_classification import (TrainConfig, format_summary,
                                               train_node_classification)

    if args.threads is not None:
        positive_int("threads", args.threads)

    out = _default_out(args)
    config = TrainConfig(
        dataset=args.dataset, model=args.model, runs=args.runs,
        epochs=args.epochs if args.epochs is not None else 1000, patience=args.patience,
        lr=args.lr, weight_decay=args.weight_decay, hidden=args.hidden, heads=args.heads,
        out_heads=args.out_heads, dropout=args.dropout, attn_dropout=args.attn_dropout,
        dropout_scheme=args.dropout_scheme, seed=args.seed, device=args.device, out=str(out),
        data_root=None if args.data_root is None else str(args.data_root), split=args.split,
        loader=args.loader, num_neighbors=args.num_neighbors, batch_size=args.batch_size,
        save_every=args.save_every, nprocs=args.nprocs)
    try:
        from .training.distributed import launch, under_torchrun

        if config.nprocs > 1 or under_torchrun():
            results = launch(train_node_classification, config, resume=args.resume,
                             progress=not args.no_progress, check_sync=args.check_sync,
                             threads=args.threads)
            if results is None:  # not rank 0 of a torchrun job
                return 0
        else:
            if args.threads is not None:
                import torch

                torch.set_num_threads(args.threads)
            results = train_node_classification(config, resume=args.resume,
                                                progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command and --resume (state in {out})",
              file=sys.stderr)
        return 130
    for r in results:
        print(f"run {r.run} (seed {r.seed}): test accuracy {100 * r.test_acc:.2f} % "
              f"(epoch {r.best_epoch} of {len(r.epochs)}, validation {100 * r.val_acc:.2f} %)")
    print(format_summary(results))
    print(f"metrics, checkpoints and config in {out}")
    return 0


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="Cora",
                        help="Cora, CiteSeer, MUTAG (shipped) or another PyG data set "
                             "(downloaded; needs a network). Default: Cora")
    parser.add_argument("--model", default="gat", choices=[*_NODE_MODELS, "gat-pool"],
                        help="attention layer (pyg-* = PyG's own, for comparison); gat-pool = "
                             "graph classification with attention pooling. Default: gat")
    parser.add_argument("--runs", type=int, default=1, help="runs with seeds seed..seed+runs-1")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs per run (default 1000; gat-pool: its own)")
    parser.add_argument("--patience", type=int, default=100,
                        help="stop after this many epochs without a better validation "
                             "loss or accuracy (default 100)")
    parser.add_argument("--lr", type=float, default=0.005, help="Adam learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="L2 penalty")
    parser.add_argument("--hidden", type=int, default=8, help="features per head, layer 1")
    parser.add_argument("--heads", type=int, default=8, help="heads of layer 1")
    parser.add_argument("--out-heads", type=int, default=1, help="heads of the output layer")
    parser.add_argument("--dropout", type=float, default=0.6, help="feature dropout")
    parser.add_argument("--attn-dropout", type=float, default=0.6, help="attention dropout")
    parser.add_argument("--dropout-scheme", choices=["per_head", "shared"], default=None,
                        help="per_head: each head draws its own input mask and its projected "
                             "features are dropped too, as in the GAT paper's code (gat, pyg-gat); "
                             "shared: one mask per layer input, as in PyG's examples/gat.py. "
                             "Default: per_head for gat and pyg-gat, shared for the others")
    parser.add_argument("--seed", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (default cpu)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default out/<dataset>-<model>)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="data root with planetoid/<Name>/raw, TU/<Name>/raw (default: "
                             "$PYG_ATTN_DATA, else the copies shipped with pyg_attn)")
    parser.add_argument("--split", choices=("public", "full"), default="public",
                        help="Cora/CiteSeer node split: public (the GAT paper's: 20 training "
                             "nodes per class) or full (the same validation and test nodes, "
                             "every other node trains). Default: public")
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs saved in --out where they stopped")
    parser.add_argument("--save-every", type=int, default=10,
                        help="save the resumable state every N epochs (default 10)")
    parser.add_argument("--loader", choices=("full", "neighbor"), default="full",
                        help="full-batch, or mini-batches from PyG's NeighborLoader (needs "
                             "the 'scatter' extra)")
    parser.add_argument("--num-neighbors", type=int, nargs="+", default=[10, 10],
                        help="neighbours sampled per layer with --loader neighbor")
    parser.add_argument("--batch-size", type=int, default=512,
                        help="seed nodes per mini-batch with --loader neighbor")
    parser.add_argument("--nprocs", type=int, default=1,
                        help="data-parallel processes on this machine (gradients averaged by an all-reduce "
                             "per step; under torchrun "
                             "its own process count is used). Full-batch training gets no "
                             "speed-up: every process runs the whole graph's forward and "
                             "backward. --loader neighbor is the mode that scales: 2 "
                             "processes x 1 thread took 0.58x (CiteSeer) and 0.59x (Cora) "
                             "the epoch time of 1 x 1 with --split full --batch-size 128, "
                             "0.72-0.87x on the public split's 120-140 training nodes "
                             "(benchmarks/results/nprocs-neighbor-cpu.md)")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op CPU threads of each process (default: torch's own "
                             "alone; the cores divided among the --nprocs processes)")
    parser.add_argument("--check-sync", action="store_true",
                        help="with several processes: check after every step that all "
                             "replicas hold the same parameters (writes distributed.json)")
    parser.add_argument("--folds", type=int, default=10, help="gat-pool: cross-validation folds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------- explain
def _explain(args: argparse.Namespace) -> int:
    from .training.explain import explain

    written = explain(args.checkpoint, args.node, out=args.out, hops=args.hops,
                      data_root=args.data_root, device=args.device, html=args.html)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def _explain_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a best.pt, its run folder, or the training output folder "
                             "(then run0/best.pt)")
    parser.add_argument("--node", type=int, default=0, help="node to draw (default 0)")
    parser.add_argument("--hops", type=int, default=2,
                        help="neighbourhood radius of the pictures (default 2)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <checkpoint folder>/explain)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="data root (default: the one the model was trained with)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:k] (default cpu)")
    parser.add_argument("--html", action="store_true",
                        help="also write attention.html, an interactive explorer of the "
                             "node's neighbourhood (every layer and head, rollout, flow)")


# ----------------------------------------------------------------------------- bench
def benchmarks_dir() -> Path:
    """The repository's ``benchmarks/`` folder (not part of an installed wheel).

    Looked for in ``$PYG_ATTN_BENCHMARKS``, next to the package (a source
    checkout or editable install), then in the current folder.

    Raises
    ------
    FileNotFoundError
        If none holds the benchmark scripts.
    """
    candidates = [Path(os.environ["PYG_ATTN_BENCHMARKS"])] if os.environ.get(
        "PYG_ATTN_BENCHMARKS") else []
    candidates += [Path(__file__).resolve().parent.parent / "benchmarks",
                   Path.cwd() / "benchmarks"]
    for folder in candidates:
        if all((folder / script).is_file() for script in BENCHMARKS.values()):
            return folder
    raise FileNotFoundError(
        "the benchmark scripts are not installed with the package: run 'pyg-attn bench' from "
        "a checkout of the pyg_attn repository (or an editable install), or set "
        f"PYG_ATTN_BENCHMARKS to its benchmarks/ folder (looked in: "
        f"{', '.join(str(c) for c in candidates)})")


def _bench(args: argparse.Namespace) -> int:
    script = benchmarks_dir() / BENCHMARKS[args.target]
    env = dict(os.environ)
    repo = str(script.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    return subprocess.call([sys.executable, str(script), *extra], env=env)


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pyg-attn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _subcommand(commands, "info", _info, help="show versions and available backends")
    _subcommand(commands, "build-ext", _build_ext, help="compile the fused CPU kernel now")
    _train_arguments(_subcommand(
        commands, "train", _train, help="train on a benchmark data set",
        description="Node classification with the GAT recipe (Velickovic et al. 2018: 8 heads "
                    "x 8 hidden, ELU, dropout 0.6, lr 0.005, weight decay 5e-4, early stopping "
                    "on validation loss/accuracy), or MUTAG graph classification with "
                    "--model gat-pool (stratified cross-validation)."))
    _explain_arguments(_subcommand(
        commands, "explain", _explain, help="export and draw a trained model's attention",
        description="Writes the attention of every layer of a checkpoint written by "
                    "'pyg-attn train' (CSV and JSON, with edge ids), and PNG pictures of a "
                    "node's attention neighbourhood and of its attention rollout."))
    _bench_arguments(_subcommand(
        commands, "bench", _bench, help="run a benchmark script of benchmarks/",
        description="Runs a script of the source tree's benchmarks/ folder (" +
                    ", ".join(f"{name}: {script}" for name, script in BENCHMARKS.items()) +
                    "); everything after the target is passed to the script, e.g. "
                    "'pyg-attn bench ops --quick --sizes cora'."))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ImportError, ValueError) as error:
        print(f"pyg-attn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
