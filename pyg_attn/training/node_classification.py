r"""Node classification on Planetoid graphs: the training loop of the GAT paper.

For each run ``r`` (seed ``seed + r``) a :class:`~pyg_attn.training.models.NodeClassifier`
is trained with Adam on the cross-entropy of the training nodes,

.. math::
    \mathcal{L} = -\frac{1}{|V_{train}|} \sum_{i \in V_{train}} \log p_{i, y_i}
    \;(+\ \text{weight decay } \lambda \lVert \theta \rVert^2 \text{ through Adam}),

and stopped early on the validation set as in the paper's code: an epoch whose
validation accuracy is at least the best so far *or* whose validation loss is at
most the lowest so far resets the patience counter; the model is kept (and
checkpointed) when both hold; training stops after ``patience`` epochs without
either.  The test nodes are evaluated once per run, with the kept model.

Features are row-normalised (:class:`~torch_geometric.transforms.NormalizeFeatures`),
as in the paper.  Training is full-batch, or mini-batch with PyG's
:class:`~torch_geometric.loader.NeighborLoader` (``loader="neighbor"``);
evaluation scores the nodes with the whole graph (:class:`Evaluator`).

Output folder (``TrainConfig.out``)::

    config.json                 the configuration
    metrics.json, metrics.csv   every run's epochs and result, the summary
    run<r>/best.pt              the kept model (what ``pyg-attn explain`` reads)
    run<r>/state.pt             resumable training state (every ``save_every`` epochs)
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..datasets import PLANETOID_SPLITS
from .checkpoint import load_checkpoint, load_config, save_checkpoint, save_config
from .checks import check_optimiser, one_of, positive_int
from .metrics import EpochRecord, RunResult, summarize, write_metrics
from .models import ModelConfig, NodeClassifier
from .options import setting
from .progress import EpochProgress
from .shard import Shard

__all__ = ["EarlyStopping", "EpochTrainer", "Evaluator", "TrainConfig", "evaluate",
           "format_summary", "load_node_data", "require_neighbor_sampler",
           "train_node_classification"]

#: Settings that may change when a run is resumed (the rest must match).
_RESUMABLE_CHANGES = frozenset({"runs", "device", "out", "save_every", "nprocs"})


@dataclass(frozen=True)
class TrainConfig(ModelConfig):
    """Everything a node-classification training run depends on: the network's
    :class:`~pyg_attn.training.models.ModelConfig` fields, then the data, the
    optimisation and the output.

    Defaults are the GAT paper's Cora/CiteSeer settings.  Each field's help is in
    its metadata (:func:`~pyg_attn.training.options.setting`); ``pyg-attn train
    --help`` shows it.
    """

    dataset: str = setting("Cora", help="Cora, CiteSeer, MUTAG (shipped) or another PyG data "
                           "set (downloaded; needs a network)")
    runs: int = setting(1, help="runs, with seeds seed .. seed + runs - 1")
    epochs: int = setting(1000, help="maximum epochs per run")
    patience: int = setting(100, help="stop after this many epochs without a better "
                            "validation loss or accuracy")
    lr: float = setting(0.005, help="Adam learning rate")
    weight_decay: float = setting(5e-4, help="Adam weight decay (L2 penalty)")
    seed: int = setting(0, help="base random seed")
    device: str = setting("cpu", help="cpu or cuda[:k]")
    out: str = setting("out/train", help="output folder",
                       shown_default="out/<dataset>-<model> on the command line")
    data_root: str | None = setting(
        None, help="data root with planetoid/<Name>/raw, TU/<Name>/raw",
        shown_default="$PYG_ATTN_DATA, else the copies shipped with pyg_attn")
    split: str = setting("public", choices=PLANETOID_SPLITS, help="Cora/CiteSeer node split: "
                         "public (the GAT paper's: 20 training nodes per class) or full (the "
                         "same validation and test nodes, every other node trains)")
    loader: str = setting("full", choices=("full", "neighbor"), help="full-batch, or "
                          "mini-batches from PyG's NeighborLoader (needs the 'scatter' extra)")
    num_neighbors: list[int] = setting(default_factory=lambda: [10, 10],
                                       help="neighbours sampled per layer with --loader neighbor")
    batch_size: int = setting(512, help="seed nodes per mini-batch with --loader neighbor")
    save_every: int = setting(10, help="save the resumable state every N epochs")
    nprocs: int = setting(1, help="data-parallel processes on this machine, gradients "
                          "averaged by an all-reduce per step (under torchrun its own process "
                          "count is used); full-batch training gains no speed, since every "
                          "process runs the whole graph: --loader neighbor is the mode that "
                          "scales (see the training guide)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("runs", "epochs", "patience", "batch_size", "save_every", "nprocs"):
            positive_int(name, getattr(self, name))
        check_optimiser(self)
        one_of("loader", self.loader, ("full", "neighbor"))
        one_of("split", self.split, PLANETOID_SPLITS)
        object.__setattr__(self, "num_neighbors", [int(n) for n in self.num_neighbors])
        if not self.num_neighbors or any(n == 0 or n < -1 for n in self.num_neighbors):
            raise ValueError("'num_neighbors' must be one positive count (or -1 for all) per "
                             f"layer, got {self.num_neighbors!r}")
        if not self.device.startswith(("cpu", "cuda")):
            raise ValueError(f"'device' must be 'cpu' or 'cuda[:k]', got {self.device!r}")

    def model_config(self) -> ModelConfig:
        """The :class:`ModelConfig` of the network (these fields of the configuration)."""
        return ModelConfig(**{f.name: getattr(self, f.name) for f in fields(ModelConfig)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}")
        return cls(**data)


class EarlyStopping:
    """The GAT paper's stopping rule on validation accuracy and loss.

    :meth:`step` returns ``(keep, stop)``: ``keep`` when the epoch's accuracy
    is >= the best accuracy so far **and** its loss <= the lowest loss so far
    (that model is the one to keep), ``stop`` once ``patience`` epochs in a row
    improved neither.

    Examples
    --------
    >>> from pyg_attn.training.node_classification import EarlyStopping
    >>> stopper = EarlyStopping(patience=2)
    >>> [stopper.step(loss, acc) for loss, acc in
    ...  [(1.0, 0.5), (0.9, 0.4), (1.2, 0.3), (1.1, 0.45)]]
    [(True, False), (False, False), (False, False), (False, True)]
    """

    def __init__(self, patience: int) -> None:
        self.patience = positive_int("patience", patience)
        self.best_acc = float("-inf")
        self.best_loss = float("inf")
        self.bad_epochs = 0

    def step(self, val_loss: float, val_acc: float) -> tuple[bool, bool]:
        """Updates the state with one epoch's validation loss and accuracy."""
        better_acc, better_loss = val_acc >= self.best_acc, val_loss <= self.best_loss
        if better_acc or better_loss:
            self.best_acc = max(self.best_acc, val_acc)
            self.best_loss = min(self.best_loss, val_loss)
            self.bad_epochs = 0
            return better_acc and better_loss, False
        self.bad_epochs += 1
        return False, self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, float]:
        """The counters, for a checkpoint."""
        return {"best_acc": self.best_acc, "best_loss": self.best_loss,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restores :meth:`state_dict`."""
        self.best_acc = float(state["best_acc"])
        self.best_loss = float(state["best_loss"])
        self.bad_epochs = int(state["bad_epochs"])


def load_node_data(dataset: str, data_root: str | None = None,
                   split: str = "public") -> tuple[Any, int, int]:
    """``(data, num_features, num_classes)`` of a node-classification data set.

    Loaded with :func:`pyg_attn.datasets.load_dataset` (flag, environment
    variable, then the shipped copy) with the node ``split`` (``"public"`` or
    ``"full"``), features row-normalised.

    Raises
    ------
    ValueError
        If the data set has no train/validation/test node masks (a
        graph-classification set such as MUTAG).
    """
    import torch_geometric.transforms as T

    from ..datasets import load_dataset

    loaded = load_dataset(dataset, root=data_root, transform=T.NormalizeFeatures(), split=split)
    data = loaded[0]
    if len(loaded) != 1 or not all(hasattr(data, m) for m in ("train_mask", "val_mask",
                                                              "test_mask")):
        raise ValueError(f"'dataset' {dataset!r} is not a node-classification data set with "
                         "train/val/test masks (for graph classification use --model gat-pool)")
    return data, loaded.num_features, loaded.num_classes


def require_neighbor_sampler() -> None:
    """Raises ``ImportError`` unless PyG can sample neighbours (torch_sparse or pyg-lib)."""
    import torch_geometric.typing as pyg_typing

    if not (pyg_typing.WITH_TORCH_SPARSE or pyg_typing.WITH_PYG_LIB):
        raise ImportError(
            "--loader neighbor needs torch_sparse or pyg-lib for PyG's NeighborLoader; install "
            "the optional 'scatter' extra: pip install 'pyg-attn[scatter]' (or pyg-lib)")


class Evaluator:
    """Cross-entropy and accuracy of a model on a set of nodes, in evaluation mode.

    Alone, the model runs on the whole graph.  In a data-parallel job each
    process takes its share of the nodes (:meth:`Shard.split
    <pyg_attn.training.shard.Shard.split>`) and runs the model on their
    :attr:`NodeClassifier.num_layers <pyg_attn.training.models.NodeClassifier.num_layers>`-hop
    in-neighbourhood only, which gives those nodes the scores of the whole
    graph; the summed losses and counts are then all-reduced, so every process
    gets the numbers of the single-process evaluation (up to the order of
    floating-point sums) for a share of its work.

    Parameters
    ----------
    data : torch_geometric.data.Data
        The graph (``x``, ``edge_index``, ``y``), on ``shard.device``.
    nodes : Tensor
        Ids of the nodes to evaluate (all processes pass the same).
    shard : Shard
        This process's part of the job.
    """

    def __init__(self, data: Any, nodes: Tensor, shard: Shard) -> None:
        self.shard = shard
        mine = shard.split(nodes)
        if shard.world_size == 1:
            self.x, self.edge_index, self.targets = data.x, data.edge_index, mine
        else:
            from torch_geometric.utils import k_hop_subgraph

            subset, self.edge_index, self.targets, _ = k_hop_subgraph(
                mine, NodeClassifier.num_layers, data.edge_index, relabel_nodes=True,
                num_nodes=data.num_nodes)
            self.x = data.x[subset]
        self.y = data.y[mine]

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module) -> tuple[float, float]:
        """``(mean cross-entropy, accuracy)`` of ``model`` over all processes' nodes."""
        model.eval()
        totals = torch.zeros(3, device=self.y.device)
        if self.y.numel():
            logits = model(self.x, self.edge_index)[self.targets]
            totals[0] = F.cross_entropy(logits, self.y, reduction="sum")
            totals[1] = (logits.argmax(dim=-1) == self.y).sum()
            totals[2] = self.y.numel()
        totals = self.shard.all_sum(totals)
        if totals[2] == 0:
            return float("nan"), 0.0
        return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def evaluate(model: torch.nn.Module, data: Any, mask: Tensor) -> tuple[float, float]:
    """``(cross-entropy, accuracy)`` on the nodes of ``mask``: full graph, evaluation mode."""
    return Evaluator(data, mask.nonzero().view(-1), Shard.single(data.y.device))(model)


class EpochTrainer:
    """One epoch of training: full batch, or the mini-batches of a NeighborLoader.

    Parameters
    ----------
    config : TrainConfig
        ``loader``, ``num_neighbors`` and ``batch_size`` are used.
    data : torch_geometric.data.Data
        The graph (``x``, ``edge_index``, ``y``) on ``device``.
    train_nodes : Tensor
        Ids of the nodes whose loss is trained on.
    device : torch.device
        Where batches go.
    """

    def __init__(self, config: TrainConfig, data: Any, train_nodes: Tensor,
                 device: torch.device) -> None:
        self.device = device
        self.data = data
        self.train_nodes = train_nodes.to(device)
        self.loader = None
        if config.loader == "neighbor":
            require_neighbor_sampler()
            from torch_geometric.loader import NeighborLoader

            self.loader = NeighborLoader(data.cpu(), num_neighbors=config.num_neighbors,
                                         input_nodes=train_nodes.cpu(),
                                         batch_size=config.batch_size, shuffle=True)

    def epoch(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              shard: Shard) -> tuple[float, float]:
        """Trains one epoch; returns (mean loss, accuracy) over the training nodes.

        In a data-parallel job the gradients are summed over the processes after
        each backward pass (:meth:`Shard.start_gradient_sync
        <pyg_attn.training.shard.Shard.start_gradient_sync>`) while the next
        mini-batch is sampled: a process that finishes its step first samples
        instead of waiting for the others.  The order of the random draws
        (sampling, dropout) is that of the plain loop.
        """
        model.train()
        batches = iter([(self.data, self.train_nodes)] if self.loader is None else
                       ((b.to(self.device), torch.arange(b.batch_size, device=self.device))
                        for b in self.loader))
        total_loss, correct, seen = 0.0, 0, 0
        batch = next(batches, None)
        while batch is not None:
            graph, targets = batch
            optimizer.zero_grad()
            logits = model(graph.x, graph.edge_index)[targets]
            y = graph.y[targets]
            loss = F.cross_entropy(logits, y)
            loss.backward()
            pending = shard.start_gradient_sync(model)
            batch = next(batches, None)
            if pending is not None:
                pending.finish()
            optimizer.step()
            shard.after_step(model)
            total_loss += loss.item() * y.numel()
            correct += int((logits.argmax(dim=-1) == y).sum())
            seen += y.numel()
        return total_loss / max(seen, 1), correct / max(seen, 1)


def _model_payload(config: TrainConfig, model: NodeClassifier, num_features: int,
                   num_classes: int, run: int, epoch: int, val_loss: float,
                   val_acc: float) -> dict[str, Any]:
    return {"model_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "model_config": config.model_config().to_dict(), "num_features": num_features,
            "num_classes": num_classes, "dataset": config.dataset,
            "data_root": config.data_root, "split": config.split, "run": run,
            "seed": config.seed + run, "epoch": epoch, "val_loss": val_loss, "val_acc": val_acc}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _train_run(config: TrainConfig, data: Any, num_features: int, num_classes: int, run: int,
               shard: Shard, resume: bool, progress: bool,
               callback: Callable[[EpochRecord], None] | None) -> RunResult:
    """Trains (or resumes, or reloads when finished) run ``run``."""
    device = shard.device
    run_dir = Path(config.out) / f"run{run}"
    state_path = run_dir / "state.pt"
    torch.manual_seed(config.seed + run)
    model = NodeClassifier(num_features, num_classes, config.model_config()).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    stopper = EarlyStopping(config.patience)
    history: list[EpochRecord] = []
    best: dict[str, Any] | None = None
    start = 1

    if resume and state_path.is_file():
        state = load_checkpoint(state_path, map_location=device)
        if state["finished"]:
            return RunResult.from_dict(state["result"])
        model.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        stopper.load_state_dict(state["stopper"])
        history = [EpochRecord(**e) for e in state["history"]]
        best = state["best"]
        start = int(state["epoch"]) + 1
        _set_rng_state(state["rng"], device)

    def save_state(epoch: int, result: RunResult | None = None) -> None:
        if shard.is_main:
            save_checkpoint({"epoch": epoch, "finished": result is not None,
                             "result": None if result is None else result.to_dict(),
                             "model_state": model.state_dict(),
                             "optimizer_state": optimizer.state_dict(),
                             "stopper": stopper.state_dict(),
                             "history": [asdict(e) for e in history], "best": best,
                             "rng": _rng_state(device)}, state_path)

    train_nodes = shard.select(data.train_mask.nonzero().view(-1))
    stepper = EpochTrainer(config, data, train_nodes, device)
    validate = Evaluator(data, data.val_mask.nonzero().view(-1), shard)
    trained = shard.wrap(model)
    bar = EpochProgress(config.epochs, f"run {run}", start - 1,
                        enabled=progress and shard.is_main)
    try:
        for epoch in range(start, config.epochs + 1):
            tic = time.perf_counter()
            train_loss, train_acc = stepper.epoch(trained, optimizer, shard)
            toc = time.perf_counter()
            val_loss, val_acc = validate(model)
            record = EpochRecord(run, epoch, train_loss, train_acc, val_loss, val_acc,
                                 toc - tic, time.perf_counter() - toc)
            history.append(record)
            keep, stop = stopper.step(val_loss, val_acc)  # the same on every process
            if keep:
                best = _model_payload(config, model, num_features, num_classes, run, epoch,
                                      val_loss, val_acc)
                if shard.is_main:
                    save_checkpoint(best, run_dir / "best.pt")
            if epoch % config.save_every == 0 and not stop:
                save_state(epoch)
            bar.update(loss=f"{train_loss:.3f}", val_acc=f"{val_acc:.3f}")
            if callback is not None:
                callback(record)
            if stop:
                break
    finally:
        bar.close()

    assert best is not None  # the first epoch is always kept
    model.load_state_dict(best["model_state"])
    _, test_acc = Evaluator(data, data.test_mask.nonzero().view(-1), shard)(model)
    result = RunResult(run, config.seed + run, best["epoch"], best["val_acc"], best["val_loss"],
                       test_acc, history)
    save_state(history[-1].epoch if history else 0, result)
    return result


def _check_resumable(config: TrainConfig) -> None:
    saved = load_config(config.out)
    current = config.to_dict()
    changed = sorted(k for k in current if k not in _RESUMABLE_CHANGES
                     and saved.get(k) != current[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {config.out}: settings differ from its config.json "
                         f"({details})")


def train_node_classification(config: TrainConfig, *, resume: bool = False,
                              progress: bool = True,
                              callback: Callable[[EpochRecord], None] | None = None,
                              shard: Shard | None = None) -> list[RunResult]:
    """Trains ``config.runs`` models; writes checkpoints and metrics to ``config.out``.

    Parameters
    ----------
    config : TrainConfig
        Data set, model, optimisation and output settings.
    resume : bool
        Continue from ``config.out``: finished runs are read back, an
        interrupted run continues from its last saved state (same random
        stream, so the result equals an uninterrupted run), missing runs start.
        The settings must equal the saved ``config.json`` except
        ``runs``, ``device``, ``out``, ``save_every`` and ``nprocs``.
    progress : bool
        Show each run's progress (main process only): a bar on a terminal, else one
        line per epoch (:class:`~pyg_attn.training.progress.EpochProgress`).
    callback : callable, optional
        Called with every epoch's :class:`EpochRecord` (after checkpointing).
    shard : Shard, optional
        This process's part of a data-parallel job
        (:func:`pyg_attn.training.distributed.launch` passes it to this function);
        single process when omitted.

    Returns
    -------
    list of RunResult
        One per run, in order.

    Examples
    --------
    >>> import tempfile
    >>> from pyg_attn.training.node_classification import TrainConfig, train_node_classification
    >>> config = TrainConfig(dataset="Cora", model="gat", epochs=2, hidden=2, heads=2,
    ...                      out=tempfile.mkdtemp())
    >>> [result] = train_node_classification(config, progress=False)
    >>> len(result.epochs), 0.0 <= result.test_acc <= 1.0
    (2, True)
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"'config' must be a TrainConfig, got {type(config).__name__}")
    shard = shard if shard is not None else Shard.single(config.device)
    if resume:
        _check_resumable(config)
    if shard.is_main:
        save_config(config.to_dict(), config.out)
    data, num_features, num_classes = load_node_data(config.dataset, config.data_root,
                                                      config.split)
    data = data.to(shard.device)
    results: list[RunResult] = []
    for run in range(config.runs):
        results.append(_train_run(config, data, num_features, num_classes, run, shard, resume,
                                  progress, callback))
        if shard.is_main:
            write_metrics(config.out, config.to_dict(), results)
    return results


def format_summary(results: Sequence[RunResult]) -> str:
    """The closing line: ``test accuracy: MEAN +- STD % over R runs``.

    Examples
    --------
    >>> from pyg_attn.training.metrics import RunResult
    >>> from pyg_attn.training.node_classification import format_summary
    >>> format_summary([RunResult(0, 0, 5, 0.8, 0.6, 0.83),
    ...                 RunResult(1, 1, 7, 0.8, 0.6, 0.81)])
    'test accuracy: 82.00 +- 1.41 % over 2 runs'
    """
    stats = summarize([r.test_acc for r in results])
    runs = stats["runs"]
    return (f"test accuracy: {100 * stats['mean']:.2f} +- {100 * stats['std']:.2f} % over "
            f"{runs} run{'s' if runs != 1 else ''}")
