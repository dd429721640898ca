from .capture import AttentionRecord, AttentionRecords, capture_attention
from .conv import GATConv, GATv2Conv, KQVConv, TransformerConv
from .pool import AttentionPooling
from .replace import replace_layers

__all__ = ["AttentionPooling", "AttentionRecord", "AttentionRecords", "GATConv", "GATv2Conv",
           "KQVConv", "TransformerConv", "capture_attention", "replace_layers"]
