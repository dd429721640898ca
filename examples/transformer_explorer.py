"""The attention explorer for a transformer: tokens in reading order, rollout and flow.

A small transformer encoder made of :class:`pyg_attn.nn.SelfAttention` layers (the
drop-in for :class:`torch.nn.MultiheadAttention`) is trained for a few seconds to
output, at every position, the *previous* word of a random word sequence, so its
attention learns to look back.  It then reads a batch of two toy sentences, the
shorter one padded; each layer's ``[B, H, T, T]`` weights
(``average_attn_weights=False``) form a tuple, as Hugging Face models return with
``output_attentions=True``.

:func:`pyg_attn.visualization.explorer` writes ``transformer_explorer.html`` for the
padded sentence (``batch=1``, padding left out with ``attention_mask``): the tokens in
reading order with arcs between them (or on a circle), every layer and head, and
rollout and flow for the chosen token.  The same tensors become records for the
analysis functions with :func:`pyg_attn.convert.token_attention`; the script prints
the rollout of the chosen token.

    python examples/transformer_explorer.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from _support import output_dir

from pyg_attn.analysis import attention_rollout
from pyg_attn.convert import token_attention
from pyg_attn.nn import SelfAttention
from pyg_attn.visualization import explorer

SENTENCES = ("the cat sat on the mat because it was tired", "a dog ran in the park")
PAD = "[pad]"


class Encoder(torch.nn.Module):
    """Token and position embeddings, then ``layers`` of self-attention with residuals."""

    def __init__(self, vocabulary: int, length: int, dim: int, heads: int, layers: int) -> None:
        super().__init__()
        self.tokens = torch.nn.Embedding(vocabulary, dim)
        self.positions = torch.nn.Embedding(length, dim)
        self.attention = torch.nn.ModuleList(SelfAttention(dim, heads, batch_first=True)
                                             for _ in range(layers))
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(dim) for _ in range(layers))
        self.out = torch.nn.Linear(dim, vocabulary)

    def forward(self, ids: torch.Tensor, padding: torch.Tensor):
        """Logits ``[B, T, V]`` and the weights ``([B, H, T, T], ...)`` of every layer;
        ``padding`` is True at padded positions (excluded, as in MultiheadAttention)."""
        x = self.tokens(ids) + self.positions(torch.arange(ids.size(1)))
        weights = []
        for attention, norm in zip(self.attention, self.norms):
            update, w = attention(x, x, x, key_padding_mask=padding, average_attn_weights=False)
            x = norm(x + update)
            weights.append(w)
        return self.out(x), tuple(weights)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--token", type=int, default=4, help="chosen token (default 4)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the page (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_transformer_")

    words = [sentence.split() for sentence in SENTENCES]
    vocabulary = [PAD] + sorted({w for sentence in words for w in sentence})
    index = {w: k for k, w in enumerate(vocabulary)}
    length = max(len(sentence) for sentence in words)
    torch.manual_seed(0)
    model = Encoder(len(vocabulary), length, dim=32, heads=4, layers=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    no_padding = torch.zeros(64, length, dtype=torch.bool)
    for _ in range(args.steps):  # output the previous word (the first one: itself)
        ids = torch.randint(1, len(vocabulary), (64, length))
        target = torch.cat([ids[:, :1], ids[:, :-1]], 1)
        logits, _ = model(ids, no_padding)
        loss = F.cross_entropy(logits.reshape(-1, len(vocabulary)), target.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"trained {args.steps} steps to output the previous word: loss {loss.item():.3f}")

    tokens = [sentence + [PAD] * (length - len(sentence)) for sentence in words]
    ids = torch.tensor([[index[w] for w in sentence] for sentence in tokens])
    mask = ids != index[PAD]  # 1 = token, 0 = padding (Hugging Face's attention_mask)
    model.eval()
    with torch.no_grad():
        _, attentions = model(ids, ~mask)
    print(f"{len(attentions)} layers of {tuple(attentions[0].shape)} attention")

    records = token_attention(attentions, labels=tokens[1], batch=1,
                              attention_mask=mask.long())
    token = min(args.token, records.num_nodes - 1)
    row = attention_rollout(records, targets=[token]).to_dense()[0]
    print(f"rollout of {records.labels[token]!r} (token {token}): " + ", ".join(
        f"{records.labels[j]} {float(row[j]):.2f}" for j in row.argsort(descending=True)[:3]))

    page = explorer(attentions, labels=tokens[1], batch=1, attention_mask=mask.long(),
                    node=token, path=out_dir / "transformer_explorer.html")
    print(f"wrote {out_dir / 'transformer_explorer.html'}: {len(page.data['tokens'])} tokens "
          f"({page.data['message']}), {len(page.html.encode()) / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
