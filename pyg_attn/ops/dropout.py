"""Counter-based attention dropout shared by every backend.

The keep/drop decision of edge ``e`` and head ``h`` is a pure function of
``(seed, e * H + h)``: a 32-bit integer hash (two rounds of the "lowbias32" mixer)
whose top 24 bits give a uniform ``u`` in ``[0, 1)``; the edge is kept iff
``u >= p`` and then scaled by ``1 / (1 - p)``.  Nothing of size ``[E, H]`` is
stored: the backward pass regenerates the same bits.  The C++ kernel
(``csrc/fused_attention.cpp``) computes exactly the same function; here it is
written with int64 tensors masked to 32 bits so the products never overflow.
"""
from __future__ import annotations

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_MUL1 = 0x21F0AAAD
_MUL2 = 0x735A2D97


def _mix32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = (x * _MUL1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _MUL2) & _MASK32
    return x ^ (x >> 15)


def draw_seed(device: torch.device) -> Tensor:
    """Draws a 31-bit dropout seed from torch's default CPU generator, so
    ``torch.manual_seed`` reproduces the mask on every device.

    Returns a 0-dim int64 tensor on ``device``: the kernels read it there, so
    neither eager calls nor ``torch.compile`` graphs wait for its value (no
    ``.item()``; the copy to a GPU does not block).
    """
    seed = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64).view(())
    return seed.to(device, non_blocking=True)


def dropout_scale(num_edges: int, heads: int, p: float, seed: Tensor,
                  device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Returns the ``[E, H]`` dropout factors (``0`` or ``1 / (1 - p)``).

    Used by the reference backend only; fused backends evaluate the same
    function on the fly.

    Parameters
    ----------
    num_edges, heads : int
        ``E`` and ``H``.
    p : float
        Dropout probability in ``[0, 1]``.
    seed : Tensor
        0-dim int64 seed of the stream (:func:`draw_seed`), on ``device`` or the CPU.
    device : torch.device or str
        Device of the result.
    dtype : torch.dtype
        Dtype of the result.

    Returns
    -------
    Tensor
        ``[E, H]`` factors, all ``0`` for ``p = 1``.
    """
    counter = torch.arange(num_edges * heads, device=device,
                           dtype=torch.int64).view(num_edges, heads)
    x = _mix32(_mix32((counter >> 32) ^ seed) ^ (counter & _MASK32))
    uniform = (x >> 8).to(torch.float64) * (1.0 / 16777216.0)
    keep = uniform >= p
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    return keep.to(dtype) * scale
