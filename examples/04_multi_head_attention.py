"""Multi-head attention: several attention graphs over the same tokens.

:class:`pyg_attn.nn.SelfAttention` has the constructor, weights and ``forward`` of
:class:`torch.nn.MultiheadAttention`; the script loads one into the other, checks
they agree, and looks at the heads: each head ``h`` has its own ``Q_h, K_h`` and so
its own row-stochastic matrix ``A_h``, i.e. its own weighted directed graph.  It
prints how focused each head is (mean row entropy, in nats; uniform attention over
``L`` keys is ``log L``), turns the last weights into one networkx graph whose edges
carry every head's weight (``weight_h0 ...``) and their mean (``weight``), and draws
the heads side by side.

    python examples/04_multi_head_attention.py --out out/
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyg_attn.nn import SelfAttention  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    parser.add_argument("--length", type=int, default=8, help="sequence length (default 8)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_mha_")

    torch.manual_seed(0)
    heads, length, embed_dim = args.heads, args.length, 8 * args.heads
    attention = SelfAttention(embed_dim, num_heads=heads, batch_first=True).eval()
    with torch.no_grad():  # sharper than the initial weights, so the heads differ visibly
        attention.in_proj_weight.mul_(2.0)
    x = torch.randn(1, length, embed_dim)

    torch_mha = torch.nn.MultiheadAttention(embed_dim, heads, batch_first=True).eval()
    torch_mha.load_state_dict(attention.state_dict())
    with torch.no_grad():
        out, per_head = attention(x, x, x, average_attn_weights=False)
        expected, expected_weights = torch_mha(x, x, x, average_attn_weights=False)
    print(f"SelfAttention vs torch.nn.MultiheadAttention (same state_dict): max |diff| "
          f"output {float((out - expected).abs().max()):.1e}, weights "
          f"{float((per_head - expected_weights).abs().max()):.1e}")

    per_head = per_head[0]  # [H, L, L]
    entropy = -(per_head * per_head.clamp_min(1e-12).log()).sum(-1).mean(-1)
    print(f"mean row entropy per head (uniform = log {length} = {math.log(length):.2f}):")
    for h in range(heads):
        top = per_head[h].argmax(-1).tolist()
        print(f"  head {h}: {float(entropy[h]):.2f}   strongest key per query: {top}")

    graph = attention.to_networkx(threshold=0.2)
    print(f"graph of the mean over heads, edges with weight > 0.2: {graph.number_of_edges()}")
    for j, i, data in sorted(graph.edges(data=True), key=lambda e: -e[2]["weight"])[:3]:
        per = ", ".join(f"{data[f'weight_h{h}']:.2f}" for h in range(heads))
        print(f"  {j} -> {i}: mean {data['weight']:.2f} (heads: {per})")

    fig, axes = plt.subplots(1, heads + 1, figsize=(2.6 * (heads + 1), 3.0))
    panels = [*per_head, per_head.mean(0)]
    titles = [f"head {h}" for h in range(heads)] + ["mean"]
    for ax, weights, title in zip(axes, panels, titles):
        ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(title)
        ax.set_xlabel("key j")
    axes[0].set_ylabel("query i")
    save_figure(fig, out_dir / "multi_head_attention.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
