from .capture import AttentionRecord, AttentionRecords, capture_attention
from .conv import GATConv, GATv2Conv, KQVConv, TransformerConv
from .dense import SelfAttention, SelfAttention2d
from .pool import AttentionPooling
from .replace import replace_layers

__all__ = ["AttentionPooling", "AttentionRecord", "AttentionRecords", "GATConv", "GATv2Conv",
           "KQVConv", "SelfAttention", "SelfAttention2d", "TransformerConv", "capture_attention",
           "replace_layers"]
