"""Attention rollout across layers: which inputs each output node draws on.

One layer's attention says whom a node reads directly; after ``L`` layers a node
has mixed information from its whole ``L``-hop neighbourhood.  Attention rollout
(Abnar & Zuidema, 2020) follows it through the layers:
``R = Â_L ... Â_1`` with ``Â_l = rownorm(0.5 A_l + 0.5 I)`` (the 0.5 I is the
residual), so ``R[i, j]`` is the share of output node ``i`` that comes from input
node ``j``.  The script trains a 3-layer GAT on the karate club
(``_support/karate.py``), captures its attention, computes the rollout with
:func:`pyg_attn.analysis.attention_rollout` (sparse, only the rows asked for;
then all rows), compares how fusing the heads by mean, max or min changes it, and
draws one layer's attention next to the rollout.

    python examples/11_attention_rollout.py --out out/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from pyg_attn.analysis import attention_rollout  # noqa: E402
from pyg_attn.convert import edge_index_to_dense  # noqa: E402
from pyg_attn.visualization import attention_heatmap  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402
from _support.karate import karate_attention  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", type=int, default=11,
                        help="output node whose sources are listed (default 11)")
    parser.add_argument("--top", type=int, default=5, help="sources listed (default 5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_rollout_")

    karate = karate_attention()
    n = karate.labels.numel()
    print(f"GAT on the karate club ({len(karate.layers)} layers): "
          f"{karate.accuracy:.0%} of clubs predicted")
    row = attention_rollout(karate.layers, targets=[args.member]).to_dense()[0]
    neighbours = sorted(karate.graph.neighbors(args.member))
    print(f"member {args.member} (club {int(karate.labels[args.member])}, friends "
          f"{neighbours}) draws on {int((row > 0).sum())} of {n} members after "
          f"{len(karate.layers)} layers; largest shares:")
    for j in row.argsort(descending=True)[:args.top].tolist():
        print(f"  member {j:>2} (club {int(karate.labels[j])}): {float(row[j]):.3f}")
    print(f"  sum of shares {float(row.sum()):.4f}")

    rollout = attention_rollout(karate.layers).to_dense()
    for fusion in ("max", "min"):
        other = attention_rollout(karate.layers, head_fusion=fusion).to_dense()
        print(f"head fusion {fusion} vs mean: max |difference| "
              f"{float((other - rollout).abs().max()):.3f}")
    same_club = karate.labels[:, None] == karate.labels[None, :]
    print(f"share of each member drawn from its own club: "
          f"{float((rollout * same_club).sum(1).mean()):.1%} (mean over members)")

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.8))
    first = karate.layers[0]
    layer1 = edge_index_to_dense(first.edge_index, first.alpha.mean(1), n)
    high = float(max(layer1.max(), rollout.max()))  # one colour scale for both
    attention_heatmap(layer1, ax=left, vmax=high, colorbar=False, annotate=False)
    left.set_title("layer 1 attention (heads averaged)")
    attention_heatmap(rollout, ax=right, vmax=high, annotate=False)
    right.set_title(f"rollout over {len(karate.layers)} layers")
    path = out_dir / "attention_rollout.png"
    save_figure(fig, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
