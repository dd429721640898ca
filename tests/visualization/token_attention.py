"""Synthetic transformer attention (a Hugging Face-style tuple) and the page's weight codec."""
from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import torch

WORDS = ("the quick brown fox jumps over the lazy dog while a small bird sings in the tree "
         "near our old house").split()


def attention_tuple(layers: int = 4, heads: int = 4, tokens: int = 16, batch: int = 2,
                    sharpness: float = 2.0, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``layers`` tensors ``[batch, heads, tokens, tokens]``: softmax of random scores
    (``sharpness`` times standard normal), as ``output_attentions=True`` gives them."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.softmax(sharpness * torch.randn(batch, heads, tokens, tokens,
                                                       generator=gen), -1)
                 for _ in range(layers))


def token_words(count: int) -> list[str]:
    """``count`` words of a sentence (repeating it as needed)."""
    return [WORDS[k % len(WORDS)] for k in range(count)]


def decoded_weights(layer: dict[str, Any], size: int, scale: int) -> np.ndarray:
    """A page layer's ``[H, T, T]`` weights, decoded as the page's script does."""
    raw = np.frombuffer(zlib.decompress(base64.b64decode(layer["weights"])), dtype=np.uint8)
    values, k = [], 0
    while k < raw.size:
        if raw[k] == 255:
            values.append((int(raw[k + 1]) << 8) | int(raw[k + 2]))
            k += 3
        else:
            values.append(int(raw[k]))
            k += 1
    return np.array(values, dtype=np.float64).reshape(layer["heads"], size, size) / scale
