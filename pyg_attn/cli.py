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
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path

#: ``pyg-attn bench`` targets -> script in the repository's ``benchmarks/`` folder.
BENCHMARKS = {"ops": "bench_ops.py", "layers": "bench_layers.py",
              "products-memory": "products_memory.py", "planetoid": "reproduce_planetoid.py",
              "mutag": "reproduce_mutag.py", "swapped-imports": "swapped_imports.py",
              "workloads": "bench_workloads.py", "gpu": "bench_gpu.py",
              "nprocs": "nprocs_scaling.py"}


def _subcommand(commands: argparse._SubParsersAction, name: str,
                run: Callable[[argparse.Namespace], int], help: str,
                description: str | None = None) -> argparse.ArgumentParser:
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
#: Flags of ``train`` that no configuration field holds: name -> (help, tasks taking it).
_RUN_FLAGS = {
    "resume": ("continue the runs saved in --out where they stopped", ("node",)),
    "threads": ("intra-op CPU threads of each process (default: torch's own alone; the "
                "cores divided among the --nprocs processes)", ("node",)),
    "check_sync": ("with several processes: check after every step that all replicas hold "
                   "the same parameters (writes distributed.json)", ("node",)),
    "folds": ("cross-validation folds (default: {folds})", ("graph",)),
    "no_progress": ("no progress bars or per-epoch lines", ("node", "graph")),
}
#: Settings of a node-classification run that also set up a graph-classification one.
_SHARED_RUN_SETTINGS = ("dataset", "data_root", "seed", "device", "out")


def _configs() -> dict[str, type]:
    """The configuration class of each task, by the label its flags' help uses."""
    from .training.graph_classifier import PoolConfig
    from .training.node_classification import TrainConfig

    return {"node": TrainConfig, "graph": PoolConfig}


def _task_settings(task: str) -> list[str]:
    """Every flag (as its destination) that a ``task`` model reads."""
    own = [f.name for f in fields(_configs()[task])]
    shared = list(_SHARED_RUN_SETTINGS) if task == "graph" else []
    return own + shared + [name for name, (_, tasks) in _RUN_FLAGS.items() if task in tasks]


def _refuse_ignored(parser: argparse.ArgumentParser, args: argparse.Namespace,
                    task: str) -> None:
    """Exits with a usage error naming every given flag the ``task`` model ignores."""
    from .training.options import flag

    wanted = set(_task_settings(task))
    ignored = [name for name, value in vars(args).items()
               if name not in wanted and name not in ("command", "run")
               and value not in (None, False)]
    if ignored:
        parser.error(f"{', '.join(flag(n) for n in ignored)} "
                     f"{'does' if len(ignored) == 1 else 'do'} not apply to --model "
                     f"{args.model} ({task} classification)")


def _default_out(args: argparse.Namespace, dataset: str) -> Path:
    out = getattr(args, "out", None)
    return Path(out) if out is not None else Path("out") / f"{dataset}-{args.model}"


def _train_graph_classification(args: argparse.Namespace) -> int:
    from .training import graph_classification
    from .training.checkpoint import atomic_write
    from .training.graph_classifier import PoolConfig
    from .training.options import given_settings

    config = PoolConfig(**given_settings(args, [f.name for f in fields(PoolConfig)]))
    run = {("root" if name == "data_root" else name): value for name, value in
           given_settings(args, ["data_root", "seed", "device"]).items()}
    if args.folds is not None:
        run["folds"] = args.folds
    dataset = getattr(args, "dataset", graph_classification.DEFAULT_DATASET)
    result = graph_classification.cross_validate(dataset, **run, progress=not args.no_progress,
                                                 config=config)
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    path = atomic_write(_default_out(args, dataset) / "metrics.json", lambda h: h.write(text),
                        binary=False)
    print(f"test accuracy: {100 * result.mean:.2f} +- {100 * result.std:.2f} % over "
          f"{len(result.accuracies)} folds")
    print(f"per-fold results in {path}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training.models import GRAPH_MODELS

    if args.model in GRAPH_MODELS:
        return _train_graph_classification(args)
    from .training.checks import positive_int
    from .training.node_classification import TrainConfig, format_summary, train_node_classification
    from .training.options import given_settings

    if args.threads is not None:
        positive_int("threads", args.threads)
    settings = given_settings(args, [f.name for f in fields(TrainConfig)])
    out = _default_out(args, settings.get("dataset", TrainConfig.dataset))
    config = TrainConfig(**{**settings, "out": str(out)})
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
    """The ``train`` flags: ``--model`` (every name of the models table), a flag per
    field of the node- and graph-classification configurations, and :data:`_RUN_FLAGS`."""
    from .training.graph_classification import DEFAULT_DATASET, DEFAULT_FOLDS
    from .training.models import GRAPH_MODELS, NODE_MODELS
    from .training.node_classification import TrainConfig
    from .training.options import add_config_flags, flag

    parser.add_argument("--model", default=TrainConfig.model,
                        choices=[*NODE_MODELS, *GRAPH_MODELS],
                        help=f"node classification: {', '.join(NODE_MODELS)} (pyg-* = PyG's "
                             f"own layers, for comparison); graph classification with "
                             f"attention pooling and cross-validation (on {DEFAULT_DATASET} "
                             f"unless --dataset names another): {', '.join(GRAPH_MODELS)}. A flag "
                             f"the model does not read is refused (default: "
                             f"{TrainConfig.model})")
    configs = _configs()
    add_config_flags(parser, {"node classification": configs["node"],
                              "graph classification": configs["graph"]}, skip=("model",))
    for name, (text, _) in _RUN_FLAGS.items():
        if name in ("threads", "folds"):
            parser.add_argument(flag(name), type=int, default=None,
                                help=text.format(folds=DEFAULT_FOLDS))
        else:
            parser.add_argument(flag(name), action="store_true", help=text)


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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="pyg-attn", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _subcommand(commands, "info", _info, help="show versions and available backends")
    _subcommand(commands, "build-ext", _build_ext, help="compile the fused CPU kernel now")
    train = _subcommand(
        commands, "train", _train, help="train on a benchmark data set",
        description="Node classification with the GAT recipe (Velickovic et al. 2018: 8 heads "
                    "x 8 hidden, ELU, dropout 0.6, lr 0.005, weight decay 5e-4, early stopping "
                    "on validation loss/accuracy), or MUTAG graph classification with "
                    "--model gat-pool (stratified cross-validation).")
    if argv[:1] == ["train"]:  # its flags import the training configurations: only when used
        _train_arguments(train)
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
    if args.command == "train":
        from .training.models import GRAPH_MODELS

        _refuse_ignored(train, args, "graph" if args.model in GRAPH_MODELS else "node")
    try:
        return args.run(args)
    except (FileNotFoundError, ImportError, ValueError) as error:
        print(f"pyg-attn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
