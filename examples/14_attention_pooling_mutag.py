"""Attention pooling on MUTAG: classify molecules, then see which atoms the readout weighs.

Trains the graph classifier of :mod:`pyg_attn.training.graph_classifier`
(GATConv layers + :class:`pyg_attn.nn.AttentionPooling`) on one fold of the
stratified 10-fold split of MUTAG (shipped with pyg_attn, no download): the epoch
is picked on a validation split, then the test fold is scored once.  Then, for a
test molecule, it prints the atoms with the largest pooling weights ``a_n`` (they
sum to 1 over the molecule) and draws the molecule with each atom coloured by its
weight.

    python examples/14_attention_pooling_mutag.py            # 100 epochs, about a minute
    python examples/14_attention_pooling_mutag.py --quick --out out/

The full cross-validation, against PyG's GATConv + AttentionalAggregation, is
``benchmarks/reproduce_mutag.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import torch  # noqa: E402
from _support import output_dir, save_figure  # noqa: E402
from torch_geometric.data import Batch, Data  # noqa: E402

from pyg_attn.datasets import load_dataset  # noqa: E402
from pyg_attn.training.graph_classification import train_fold  # noqa: E402
from pyg_attn.training.graph_classifier import GraphClassifier, PoolConfig  # noqa: E402
from pyg_attn.training.splits import cv_splits  # noqa: E402

ATOMS = ["C", "N", "O", "F", "I", "Cl", "Br"]          # MUTAG node labels (raw README)
BONDS = ["aromatic", "single", "double", "triple"]     # MUTAG edge labels
CLASSES = ["not mutagenic", "mutagenic"]


def pooling_weights(model: GraphClassifier, molecule: Data) -> tuple:
    """``(predicted class, weights [N])`` of one molecule."""
    logits, weights = model(Batch.from_data_list([molecule]), return_attention_weights=True)
    return int(logits.argmax()), weights.view(-1)


def draw(molecule: Data, weights: torch.Tensor, title: str, path: Path) -> None:
    """The molecule with atom colour = pooling weight; double bonds drawn thicker."""
    graph = nx.Graph()
    graph.add_nodes_from(range(molecule.num_nodes))
    bond = molecule.edge_attr.argmax(dim=1).tolist()
    for (j, i), kind in zip(molecule.edge_index.t().tolist(), bond):
        graph.add_edge(j, i, width=3.0 if BONDS[kind] == "double" else 1.5)
    atoms = [ATOMS[a] for a in molecule.x.argmax(dim=1).tolist()]
    layout = nx.kamada_kawai_layout(graph)
    fig, ax = plt.subplots(figsize=(6, 5))
    nx.draw_networkx_edges(graph, layout, ax=ax,
                           width=[graph.edges[e]["width"] for e in graph.edges])
    nodes = nx.draw_networkx_nodes(graph, layout, ax=ax, node_color=weights.tolist(),
                                   cmap="YlOrRd", vmin=0.0, node_size=420, edgecolors="black")
    nx.draw_networkx_labels(graph, layout, dict(enumerate(atoms)), ax=ax, font_color="black",
                            font_size=9)
    fig.colorbar(nodes, ax=ax, label="pooling weight $a_n$ (sums to 1)")
    ax.set_title(title)
    ax.axis("off")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    parser.add_argument("--fold", type=int, default=0, help="test fold of 10 (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the picture (default: a new temporary folder)")
    parser.add_argument("--quick", action="store_true", help="10 epochs, for smoke tests")
    args = parser.parse_args(argv)
    epochs = 10 if args.quick else args.epochs
    out_dir = output_dir(args.out, "pyg_attn_mutag_")

    dataset = load_dataset("MUTAG")
    split = cv_splits(dataset.y, folds=10, seed=args.seed)[args.fold]
    result = train_fold(dataset, split, PoolConfig(epochs=epochs), seed=args.seed + args.fold)
    print(f"MUTAG fold {args.fold}: {len(split.train)} train / {len(split.val)} validation / "
          f"{len(split.test)} test graphs, epoch {result.best_epoch} of {epochs} chosen on "
          f"validation")
    print(f"test accuracy: {100 * result.test_accuracy:.1f} %")

    mutagenic = [int(g) for g in split.test if int(dataset[int(g)].y) == 1]
    graph_id = (mutagenic or split.test.tolist())[0]
    molecule = dataset[graph_id]
    with torch.no_grad():
        predicted, weights = pooling_weights(result.model, molecule)
    atoms = [ATOMS[a] for a in molecule.x.argmax(dim=1).tolist()]
    print(f"\nmolecule {graph_id} ({molecule.num_nodes} atoms, {CLASSES[int(molecule.y)]}, "
          f"predicted {CLASSES[predicted]}); weights sum to {float(weights.sum()):.3f}")
    print("most attended atoms (node, atom, weight, neighbours):")
    neighbours = {n: [] for n in range(molecule.num_nodes)}
    for j, i in molecule.edge_index.t().tolist():
        neighbours[i].append(atoms[j])
    for node in weights.argsort(descending=True)[:5].tolist():
        print(f"  {node:3d}  {atoms[node]:2s}  {float(weights[node]):.3f}  "
              f"{'-'.join(sorted(neighbours[node]))}")

    path = out_dir / f"mutag_pooling_graph{graph_id}.png"
    draw(molecule, weights, f"MUTAG graph {graph_id}: attention pooling weights", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
