"""Training from the command line: node classification (GAT recipe), checkpoints,
metrics, explanations, multi-process data parallelism.

Kept light: submodules are imported where used (the CLI imports them for
``pyg-attn train`` only).  Node classification: ``models``, ``node_classification``;
graph classification: ``graph_classifier``, ``splits``, ``graph_classification``;
``options`` turns the configurations' fields into the command line's flags.
"""
