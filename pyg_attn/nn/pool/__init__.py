"""Graph pooling: readouts that turn node features into one vector per graph."""
from .attention_pooling import AttentionPooling

__all__ = ["AttentionPooling"]
