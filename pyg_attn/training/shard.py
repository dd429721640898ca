"""A process's place in a data-parallel job, and what the training loop asks of it.

:class:`Shard` is what :func:`~pyg_attn.training.node_classification.train_node_classification`
needs to know about the other processes (its rank, how to split nodes, how to
wrap the model, how to sum counts over them); :mod:`pyg_attn.training.distributed`
sets up the processes and hands each its shard.  Alone, ``Shard.single()``
makes every method a no-op.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GradientSum", "Shard"]


class GradientSum:
    """The gradients of one optimiser step on their way through an all-reduce
    (started by :meth:`Shard.start_gradient_sync`): :meth:`finish` waits for it
    and leaves every process's mean gradient in each parameter's ``.grad``.

    Parameters
    ----------
    params : list of Tensor
        The parameters, each with a ``.grad``.
    flat : Tensor
        Their gradients concatenated, being summed in place.
    work : torch.distributed.Work
        The asynchronous all-reduce of ``flat``.
    world_size : int
        Number of processes (the divisor of the mean).
    """

    def __init__(self, params: Sequence[Tensor], flat: Tensor, work: Any,
                 world_size: int) -> None:
        self.params, self.flat, self.work, self.world_size = params, flat, work, world_size

    def finish(self) -> None:
        """Waits for the sum and writes the mean back into the ``.grad`` tensors."""
        self.work.wait()
        self.flat.div_(self.world_size)
        offset = 0
        for p in self.params:
            assert p.grad is not None
            p.grad.copy_(self.flat[offset:offset + p.numel()].view_as(p.grad))
            offset += p.numel()


@dataclass
class Shard:
    """This process's place in a data-parallel job (``world_size == 1``: alone).

    Attributes
    ----------
    rank : int
        Global rank of this process.
    world_size : int
        Number of processes.
    device : torch.device
        The device this process trains on.
    check_sync : bool
        Compare all replicas' parameters after every optimiser step (an
        ``all_gather`` of the flattened parameters; for tests and debugging).
    steps_checked : int
        Number of steps compared so far.
    max_param_diff : float
        Largest absolute parameter difference seen between replicas.
    """

    rank: int
    world_size: int
    device: torch.device
    check_sync: bool = False
    steps_checked: int = 0
    max_param_diff: float = 0.0

    @classmethod
    def single(cls, device: Any = "cpu") -> Shard:
        """A single-process job on ``device``."""
        return cls(0, 1, torch.device(device))

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0

    @property
    def uses_ddp(self) -> bool:
        """Whether :meth:`wrap` hands the model to
        :class:`~torch.nn.parallel.DistributedDataParallel` (several processes on
        CUDA), which then sums the gradients during ``backward``."""
        return self.world_size > 1 and self.device.type == "cuda"

    def select(self, nodes: Tensor) -> Tensor:
        """This process's shard of ``nodes`` (all of them when alone).

        Raises
        ------
        ValueError
            If there are fewer nodes than processes.

        Examples
        --------
        >>> import torch
        >>> from pyg_attn.training.shard import Shard
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

    def split(self, nodes: Tensor) -> Tensor:
        """This process's part of ``nodes`` when every node must be covered (for
        evaluation): ``nodes[rank::world_size]``, parts differ in size by one at most.

        Examples
        --------
        >>> import torch
        >>> from pyg_attn.training.shard import Shard
        >>> Shard(0, 2, torch.device("cpu")).split(torch.arange(7)).tolist()
        [0, 2, 4, 6]
        """
        return nodes if self.world_size == 1 else nodes[self.rank::self.world_size]

    def all_sum(self, values: Tensor) -> Tensor:
        """The sum of every process's ``values`` (``values`` itself when alone; the
        same result on every process)."""
        if self.world_size > 1:
            dist.all_reduce(values)
        return values

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as trained, with rank 0's parameters and buffers on every process.

        On CUDA it is wrapped in
        :class:`~torch.nn.parallel.DistributedDataParallel`, which sums the
        gradients during the backward pass.  On the CPU it is returned as it is:
        the training loop sums the gradients itself
        (:meth:`start_gradient_sync`), overlapping the all-reduce with the
        sampling of the next mini-batch.
        """
        if self.world_size == 1:
            return model
        if self.uses_ddp:
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(model, device_ids=[self.device.index])
        with torch.no_grad():
            for tensor in [*model.parameters(), *model.buffers()]:
                dist.broadcast(tensor, src=0)
        return model

    def start_gradient_sync(self, model: torch.nn.Module) -> GradientSum | None:
        """Starts summing this step's gradients over the processes (after
        ``backward``, before the optimiser step); ``None`` when there is nothing
        to do: alone, or with DDP (it summed them during ``backward``).

        A trainable parameter without a gradient counts as a zero gradient (it
        may have one on another process).

        Returns
        -------
        GradientSum or None
            Call its :meth:`~GradientSum.finish` before the optimiser step; the
            process may do other work (sample the next batch) in between.
        """
        if self.world_size == 1 or self.uses_ddp:
            return None
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
        return GradientSum(params, flat, dist.all_reduce(flat, async_op=True), self.world_size)

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
