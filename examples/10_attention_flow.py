"""Attention flow: max-flow through the layers, next to rollout; max-flow and betweenness
in one attention graph.

Attention flow (Abnar & Zuidema, 2020) treats the layers as a network: node
``(l, v)`` for every layer ``l`` and node ``v``, edges ``(l-1, j) -> (l, i)`` with
capacity ``Â_l[i, j] = rownorm(0.5 A_l + 0.5 I)[i, j]``.  ``flow[i, j]`` is the
max-flow from input ``j`` to output ``i``: limited by the narrowest cut, where
rollout multiplies and sums along all paths.  The script trains a 3-layer GAT on
the karate club (``_support/karate.py``), computes flow and rollout for the two
club leaders (0 and 33) with :func:`pyg_attn.analysis.attention_flow` (scipy's
max-flow when available, networkx otherwise; the first target is checked against
networkx), then in the first layer's attention graph the max-flow between two
members and the members lying on most attention paths (betweenness, distance
``-log a``).  It draws flow and rollout side by side.

    python examples/10_attention_flow.py --out out/
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pyg_attn.analysis import (attention_betweenness, attention_flow,  # noqa: E402
                               attention_max_flow, attention_rollout)
from pyg_attn.visualization import attention_heatmap  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402
from _support.karate import karate_attention  # noqa: E402

LEADERS = [0, 33]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=5, help="sources listed (default 5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out_dir = output_dir(args.out, prefix="pyg_attn_flow_")

    karate = karate_attention()
    print(f"GAT on the karate club ({len(karate.layers)} layers): "
          f"{karate.accuracy:.0%} of clubs predicted")
    start = time.perf_counter()
    flow = attention_flow(karate.layers, targets=LEADERS)
    seconds = time.perf_counter() - start
    print(f"attention flow into members {LEADERS} from all 34: {seconds:.2f} s")
    start = time.perf_counter()
    reference = attention_flow(karate.layers, targets=LEADERS[:1], method="networkx")
    print(f"networkx reference for member {LEADERS[0]}: {time.perf_counter() - start:.2f} s, "
          f"max |difference| {float((reference[0] - flow[0]).abs().max()):.1e}")
    rollout = attention_rollout(karate.layers, targets=LEADERS).to_dense().double()
    for row, leader in enumerate(LEADERS):
        top = flow[row].argsort(descending=True)[:args.top].tolist()
        listed = ", ".join(f"{j} (flow {float(flow[row, j]):.3f}, rollout "
                           f"{float(rollout[row, j]):.3f})" for j in top)
        print(f"member {leader} draws most on: {listed}")
        corr = torch.corrcoef(torch.stack([flow[row], rollout[row]]))[0, 1]
        print(f"  correlation of flow and rollout over sources: {float(corr):.2f}")

    layer = karate.layers[0]
    print(f"layer 1 alone: max-flow from member 33 to member 0: "
          f"{attention_max_flow(layer, 33, 0):.3f}, from 0 to 33: "
          f"{attention_max_flow(layer, 0, 33):.3f}")
    between = attention_betweenness(layer, distance="neg_log")
    top = between.argsort(descending=True)[:args.top].tolist()
    print("members on most attention paths (betweenness, -log a): "
          + ", ".join(f"{v} ({float(between[v]):.3f})" for v in top))

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.2))
    # separate colour scales: a flow is at most 1 per pair, a rollout row sums to 1
    attention_heatmap(flow, y_labels=LEADERS, ax=left, annotate=False)
    left.set_title("attention flow into the leaders")
    attention_heatmap(rollout, y_labels=LEADERS, ax=right, annotate=False)
    right.set_title("attention rollout into the leaders")
    path = out_dir / "attention_flow.png"
    save_figure(fig, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
