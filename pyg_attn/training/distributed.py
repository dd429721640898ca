r"""Data-parallel training with ``torch.distributed``.

Every process holds the whole graph and a replica of the model; the training
nodes are split into ``world_size`` equal shards (``nodes[rank::world_size]``
of the first ``world_size * floor(n / world_size)``), each process computes the
loss on its shard and the gradients are averaged over the processes (on CUDA
by :class:`~torch.nn.parallel.DistributedDataParallel`; on the CPU by one
asynchronous all-reduce per step that runs while the next mini-batch is
sampled, :meth:`~pyg_attn.training.shard.Shard.start_gradient_sync`), so
every replica takes the same optimiser step:

.. math::
    g = \frac{1}{P} \sum_{p=1}^{P} \nabla \frac{1}{|S_p|} \sum_{i \in S_p} \ell_i
      = \nabla \frac{1}{|S|} \sum_{i \in S} \ell_i
      \quad (|S_1| = \dots = |S_P|).

All processes use the same seed, so with full-batch training their dropout
masks agree and the job computes the single-process gradient (up to the
order of floating-point sums); with ``--loader neighbor`` each process samples
mini-batches from its own shard.  Evaluation is sharded too: each process
scores its share of the validation (and test) nodes on their neighbourhood
and the loss sums and counts are all-reduced
(:class:`~pyg_attn.training.node_classification.Evaluator`), so every process
takes the same stopping decision; only rank 0 writes checkpoints and metrics.
Backend: ``gloo`` on CPU, ``nccl`` on CUDA (process ``local_rank`` on GPU
``local_rank``).

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
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .checkpoint import atomic_write
from .shard import Shard

__all__ = ["launch", "under_torchrun"]

#: A data-parallel training function: ``train(config, resume=, progress=, shard=)``
#: returns its results (on every rank), such as
#: :func:`~pyg_attn.training.node_classification.train_node_classification`.
TrainFunction = Callable[..., list[Any]]


def under_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (its environment is set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and \
        "MASTER_ADDR" in os.environ


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, init_method: str, local_rank: int, train: TrainFunction,
            config: Any, resume: bool, progress: bool, check_sync: bool,
            threads: int | None, spawned: bool) -> list[Any]:
    cuda = config.device.startswith("cuda")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    elif spawned and not cuda:  # share this machine's cores instead of oversubscribing them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group("nccl" if cuda else "gloo", init_method=init_method, rank=rank,
                            world_size=world_size)
    try:
        shard = Shard(rank, world_size, device, check_sync=check_sync)
        results = train(config, resume=resume, progress=progress, shard=shard)
        if shard.is_main:
            report = {"world_size": world_size, "backend": dist.get_backend(),
                      "steps_checked": shard.steps_checked,
                      "max_param_diff": shard.max_param_diff}
            text = json.dumps(report, indent=2) + "\n"
            atomic_write(Path(config.out, "distributed.json"), lambda h: h.write(text),
                         binary=False)
        return results
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, world_size: int, init_method: str, train: TrainFunction, config: Any,
             resume: bool, progress: bool, check_sync: bool, threads: int | None,
             results_path: str) -> None:
    results = _worker(rank, world_size, init_method, rank, train, config, resume, progress,
                      check_sync, threads, True)
    if rank == 0:
        torch.save(results, results_path)


def launch(train: TrainFunction, config: Any, *, resume: bool = False, progress: bool = True,
           check_sync: bool = False, threads: int | None = None) -> list[Any] | None:
    """Runs ``train`` data-parallel over ``config.nprocs`` local processes, or inside a
    torchrun job.

    Parameters
    ----------
    train : callable
        ``train(config, resume=, progress=, shard=)``, called in every process
        with its :class:`~pyg_attn.training.shard.Shard`; returns a list of
        results, e.g.
        :func:`~pyg_attn.training.node_classification.train_node_classification`.
        Spawned processes pickle it, so it must be a module-level function.
    config : TrainConfig
        The training settings (``nprocs`` processes when spawning, ``device``,
        ``out``).
    resume, progress : bool
        Passed to ``train``.
    check_sync : bool
        Compare the replicas' parameters after every step; rank 0 writes
        ``distributed.json`` (``steps_checked``, ``max_param_diff``) to ``config.out``.
    threads : int, optional
        Intra-op threads of every process (:func:`torch.set_num_threads`); by
        default spawned CPU processes share this machine's cores equally and
        torchrun's keep torch's default.

    Returns
    -------
    list or None
        ``train``'s results on rank 0 (passed back to this process after
        spawning), ``None`` on the other ranks of a torchrun job.

    Raises
    ------
    ValueError
        If ``config.device`` is CUDA and there are fewer GPUs than processes.
    """
    if under_torchrun():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        results = _worker(rank, world, "env://", int(os.environ.get("LOCAL_RANK", 0)), train,
                          config, resume, progress, check_sync, threads, False)
        return results if rank == 0 else None
    if config.device.startswith("cuda") and torch.cuda.device_count() < config.nprocs:
        raise ValueError(f"'nprocs' = {config.nprocs} needs as many GPUs, found "
                         f"{torch.cuda.device_count()}")
    import torch.multiprocessing as mp

    init_method = f"tcp://127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory(prefix="pyg_attn_launch_") as folder:
        results_path = str(Path(folder, "results.pt"))
        mp.spawn(_spawned, args=(config.nprocs, init_method, train, config, resume, progress,
                                 check_sync, threads, results_path),
                 nprocs=config.nprocs, join=True)
        return torch.load(results_path, weights_only=False)
