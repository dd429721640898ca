"""Dense self-attention modules: sequences (:class:`SelfAttention`) and images."""
from .self_attention import SelfAttention

__all__ = ["SelfAttention"]
