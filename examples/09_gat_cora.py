"""GAT on Cora: train with the paper's recipe, print the test accuracy, draw a node's attention.

The same as ``pyg-attn train --dataset Cora --model gat`` followed by
``pyg-attn explain``: a two-layer GAT (8 heads x 8 features, ELU, dropout 0.6,
lr 0.005, weight decay 5e-4, early stopping on validation loss and accuracy)
is trained on the Cora citation graph shipped with pyg_attn; the kept model's
attention is exported (CSV/JSON, every layer, with edge ids) and drawn for one
node: its 2-hop neighbourhood in the last layer and its attention rollout.

    python examples/09_gat_cora.py --out out/          # up to 1000 epochs, ~1 min on 2 cores
    python examples/09_gat_cora.py --quick --out out/  # 5 epochs, a smoke test

Direction (docs/guide/conventions.md): arrows point along messages ``j -> i``; the weight
``a_ij`` of node ``i`` on its neighbour ``j`` sums to 1 over ``i``'s incoming edges.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from _support import output_dir  # noqa: E402
from pyg_attn.training.explain import explain  # noqa: E402
from pyg_attn.training.node_classification import (  # noqa: E402
    TrainConfig, format_summary, train_node_classification)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000, help="maximum epochs (default 1000)")
    parser.add_argument("--quick", action="store_true", help="5 epochs, for smoke tests")
    parser.add_argument("--node", type=int, default=0, help="node to draw (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out = output_dir(args.out, prefix="pyg_attn_gat_")

    config = TrainConfig(dataset="Cora", model="gat", epochs=5 if args.quick else args.epochs,
                         seed=args.seed, out=str(out / "train"))
    [result] = train_node_classification(config, progress=not args.quick)
    print(f"kept epoch {result.best_epoch} of {len(result.epochs)} "
          f"(validation accuracy {100 * result.val_acc:.1f} %)")
    print(format_summary([result]))

    written = explain(out / "train", node=args.node, out=out)
    node = json.loads(written["json"].read_text())["node"]
    incoming = node["incoming"]["conv2"]
    print(f"\nnode {args.node} (class {node['label']}, predicted {node['prediction']}) "
          "attends in the last layer to:")
    for source, alpha in sorted(zip(incoming["source"], incoming["alpha"]),
                                key=lambda pair: -pair[1][0]):
        print(f"  {'itself' if source == args.node else f'node {source}':>10}: "
              f"a = {alpha[0]:.3f}")
    print(f"\npictures: {written['attention_png']}, {written['rollout_png']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
