r"""Data-parallel training with ``torch.distributed`` (DDP).

Every process holds the whole graph and a replica of the model; the training
nodes are split into ``world_size`` equal shards (``nodes[rank::world_size]``
of the first ``world_size * floor(n / world_size)``), each process computes the
loss on its shard and
:class:`~torch.nn.parallel.DistributedDataParallel` averages the gradients, so
every replica takes the same optimiser step:

.. math::
    g = \frac{1}{P} \sum_{p=1}^{P} \nabla \frac{1}{|S_p|} \sum_{i \in S_p} \ell_i
      = \nabla \frac{1}{|S|} \sum_{i \in S} \ell_i
      \quad (|S_1| = \dots = |S_P|).

All processes use the same seed, so with full-batch training their dropout
masks agree and the job computes the single-process gradient (up to the
order of floating-point sums); with ``--loader neighbor`` each process samples
mini-batches from its own shard.  Evaluation runs on every process (the
stopping decision is taken by rank 0 and broadcast); only rank 0 writes
checkpoints and metrics.  Backend: ``gloo`` on CPU, ``nccl`` on CUDA (process
``local_rank`` on GPU ``local_rank``).

Launching
---------
* ``pyg-attn train ... --nprocs 2`` starts the processes on this machine with
  :func:`torch.multiprocessing.spawn`.
* Under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) each process joins the job
  torchrun set up; ``--nprocs`` is then ignored.  On several machines run, on
  each of them (``--node-rank`` 0 on the machine named by ``--master-addr``)::

      torchrun --nnodes 2 --nproc-per-node 2 --node-rank 0 \
          --master-addr node0.example --master-port 29500 \
          -m pyg_attn train --dataset Cora --model gat --out /shared/cora-gat

  The output folder matters on rank 0 only; ``--resume`` needs it on a file
  system every machine sees.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["Shard", "launch", "under_torchrun"]


@dataclass
class Shard:
    """This process's place in a data-parallel job (``world_size == 1``: alone).

    Attributes:
        rank: global rank of this process.
        world_size: number of processes.
        device: the device this process trains on.
        check_sync: compare all replicas' parameters after every optimiser step
            (an ``all_gather`` of the flattened parameters; for tests and debugging).
        steps_checked: number of steps compared so far.
        max_param_diff: largest absolute parameter difference seen between replicas.
    """

    rank: int
    world_size: int
    device: torch.device
    check_sync: bool = False
    steps_checked: int = 0
    max_param_diff: float = 0.0

    @classmethod
    def single(cls, device: Any = "cpu") -> "Shard":
        """A single-process job on ``device``."""
        return cls(0, 1, torch.device(device))

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    def select(self, nodes: Tensor) -> Tensor:
        """This process's shard of ``nodes`` (all of them when alone).

        Examples:
            >>> import torch
            >>> from pyg_attn.training.distributed import Shard
            >>> Shard(1, 2, torch.device("cpu")).select(torch.arange(7)).tolist()
            [1, 3, 5]
        """
        if self.world_size == 1:
            return nodes
        usable = nodes.numel() // self.world_size * self.world_size
        if usable == 0:
            raise ValueError(f"{nodes.numel()} training nodes cannot be shared by "
                             f"{self.world_size} processes")
        return nodes[:usable][self.rank::self.world_size]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as trained: wrapped in DDP when there are several processes."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every process."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def after_step(self, model: torch.nn.Module) -> None:
        """With ``check_sync``: compares this replica's parameters with all others."""
        if not self.check_sync or self.world_size == 1:
            return
        flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
        gathered = [torch.empty_like(flat) for _ in range(self.world_size)]
        dist.all_gather(gathered, flat)
        diff = max(float((g - flat).abs().max()) for g in gathered)
        self.max_param_diff = max(self.max_param_diff, diff)
        self.steps_checked += 1


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its environment is set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and \
        "MASTER_ADDR" in os.environ


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, init_method: str, local_rank: int, config: Any,
            resume: bool, progress: bool, check_sync: bool, spawned: bool) -> List[Any]:
    from .node_classification import train_node_classification

    cuda = config.device.startswith("cuda")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    elif spawned:  # share this machine's cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method, rank=rank,
                            world_size=world_size)
    try:
        shard = Shard(rank, world_size, device, check_sync=check_sync)
        results = train_node_classification(config, resume=resume, progress=progress,
                                            shard=shard)
        if shard.is_main:
            report = {"world_size": world_size, "backend": dist.get_backend(),
                      "steps_checked": shard.steps_checked,
                      "max_param_diff": shard.max_param_diff}
            Path(config.out, "distributed.json").write_text(json.dumps(report, indent=2) + "\n")
        return results
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world_size: int, init_method: str, config: Any, resume: bool,
             progress: bool, check_sync: bool) -> None:
    _worker(rank, world_size, init_method, rank, config, resume, progress, check_sync, True)


def launch(config: Any, *, resume: bool = False, progress: bool = True,
           check_sync: bool = False) -> Optional[List[Any]]:
    """Runs :func:`~pyg_attn.training.node_classification.train_node_classification`
    data-parallel over ``config.nprocs`` local processes, or inside a torchrun job.

    Parameters
    ----------
    config : TrainConfig
        The training settings (``nprocs`` processes when spawning).
    resume, progress : bool
        As in :func:`~pyg_attn.training.node_classification.train_node_classification`.
    check_sync : bool
        Compare the replicas' parameters after every step; rank 0 writes
        ``distributed.json`` (``steps_checked``, ``max_param_diff``) to ``config.out``.

    Returns
    -------
    list of RunResult or None
        The results on rank 0 (read back from ``metrics.json`` after spawning),
        ``None`` on the other ranks of a torchrun job.
    """
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        results = _worker(rank, world, "env://", int(os.environ.get("LOCAL_RANK", 0)), config,
                          resume, progress, check_sync, False)
        return results if rank == 0 else None
    if config.device.startswith("cuda") and torch.cuda.device_count() < config.nprocs:
        raise ValueError(f"'nprocs' = {config.nprocs} needs as many GPUs, found "
                         f"{torch.cuda.device_count()}")
    import torch.multiprocessing as mp

    from .metrics import RunResult

    init_method = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(_spawned, args=(config.nprocs, init_method, config, resume, progress, check_sync),
             nprocs=config.nprocs, join=True)
    metrics = json.loads(Path(config.out, "metrics.json").read_text(encoding="utf-8"))
    return [RunResult.from_dict(r) for r in metrics["runs"]]
