"""Training from the command line: node classification (GAT recipe), checkpoints,
metrics, explanations, multi-process data parallelism.

Kept light: submodules are imported where used (``graph_classification`` in
particular is only imported by the ``gat-pool`` model of the CLI).
"""
