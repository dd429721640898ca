#!/usr/bin/env python
"""An existing PyG training script, run twice: with PyG's ``GATConv`` and with ours.

``SCRIPT`` below is a PyG-style GAT training script in the shape of PyG's
``examples/gat.py`` (two ``GATConv`` layers, 8 heads x 8 hidden, dropout 0.6, ELU,
Adam with lr 0.005 and weight decay 5e-4, 200 epochs, the test accuracy at the best
validation accuracy).  Its text is run unchanged except for one line, its import::

    from torch_geometric.nn import GATConv      # PyG
    from pyg_attn.nn import GATConv             # pyg_attn

once per seed and import, alternating, in this process; the data set comes from
``pyg_attn.datasets.load_dataset`` (the embedded copy unless ``--data-root``), the
only change needed on an offline machine.  Prints per seed and per import the test
accuracy and the median epoch time, then mean +- std and the per-epoch time ratio.

    PYTHONPATH=. python benchmarks/swapped_imports.py --seeds 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without PYTHONPATH
    sys.path.insert(0, str(ROOT))

IMPORTS = {
    "pyg": "from torch_geometric.nn import GATConv",
    "pyg_attn": "from pyg_attn.nn import GATConv",
}

#: The training script; ``{IMPORT}`` is its only varying line.  It reads ``dataset``,
#: ``seed`` and ``epochs`` from its globals and leaves ``test_acc`` and
#: ``epoch_times`` (seconds per training step + evaluation) behind.
SCRIPT = '''
import time

import torch
import torch.nn.functional as F
{IMPORT}

torch.manual_seed(seed)
data = dataset[0]


class GAT(torch.nn.Module):
    def __init__(self, in_channels, hidden_channels, out_channels, heads):
        super().__init__()
        self.conv1 = GATConv(in_channels, hidden_channels, heads, dropout=0.6)
        self.conv2 = GATConv(hidden_channels * heads, out_channels, heads=1,
                             concat=False, dropout=0.6)

    def forward(self, x, edge_index):
        x = F.dropout(x, p=0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=0.6, training=self.training)
        x = self.conv2(x, edge_index)
        return x


model = GAT(dataset.num_features, 8, dataset.num_classes, heads=8)
optimizer = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=5e-4)


def train():
    model.train()
    optimizer.zero_grad()
    out = model(data.x, data.edge_index)
    loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
    loss.backward()
    optimizer.step()
    return float(loss)


@torch.no_grad()
def test():
    model.eval()
    pred = model(data.x, data.edge_index).argmax(dim=-1)
    accs = []
    for mask in [data.train_mask, data.val_mask, data.test_mask]:
        accs.append(int((pred[mask] == data.y[mask]).sum()) / int(mask.sum()))
    return accs


best_val_acc = test_acc = 0
epoch_times = []
for epoch in range(1, epochs + 1):
    start = time.perf_counter()
    loss = train()
    train_acc, val_acc, tmp_test_acc = test()
    epoch_times.append(time.perf_counter() - start)
    if val_acc > best_val_acc:
        best_val_acc = val_acc
        test_acc = tmp_test_acc
'''


def run_script(which: str, dataset, seed: int, epochs: int) -> dict:
    """Runs ``SCRIPT`` with the import of ``which``; returns its accuracy and timing."""
    scope = {"dataset": dataset, "seed": seed, "epochs": epochs, "__name__": "swapped"}
    exec(compile(SCRIPT.format(IMPORT=IMPORTS[which]), f"<gat.py with {which}>", "exec"), scope)
    return {"test_acc": 100.0 * scope["test_acc"],
            "epoch_ms": 1e3 * statistics.median(scope["epoch_times"])}


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} +- {std:.2f}"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="Cora", help="Cora or CiteSeer (default Cora)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (default 10)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--data-root", default=None, help="data root (default: shipped copies)")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.epochs < 1 or args.threads < 1:
        parser.error("--seeds, --epochs and --threads must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import torch_geometric.transforms as T

    from pyg_attn.datasets import load_dataset

    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.dataset, root=args.data_root, transform=T.NormalizeFeatures())
    results: dict[str, list[dict]] = {which: [] for which in IMPORTS}
    for seed in range(args.seeds):
        for which in IMPORTS:  # alternate, so both see the same machine state
            result = run_script(which, dataset, seed, args.epochs)
            results[which].append(result)
            print(f"{args.dataset} seed {seed} {which:8s}: test {result['test_acc']:.1f} %, "
                  f"{result['epoch_ms']:.1f} ms/epoch", flush=True)
    print(f"\n{args.dataset}, {args.seeds} seeds, {args.epochs} epochs, "
          f"{args.threads} threads: test accuracy (%) and median epoch time")
    pyg_ms = statistics.mean(r["epoch_ms"] for r in results["pyg"])
    for which, rows in results.items():
        ms = statistics.mean(r["epoch_ms"] for r in rows)
        print(f"  {which:8s} {mean_std([r['test_acc'] for r in rows])} %   {ms:.1f} ms/epoch"
              f"   speed-up vs pyg {pyg_ms / ms:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
