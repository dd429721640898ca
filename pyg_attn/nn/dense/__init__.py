"""Dense self-attention modules: sequences (:class:`SelfAttention`) and images."""
from .self_attention import SelfAttention
from .self_attention_2d import SelfAttention2d

__all__ = ["SelfAttention", "SelfAttention2d"]
