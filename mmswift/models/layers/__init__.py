from .attention import ATTN_NORMS, EfficientAdditiveAttention
from .common import DropPath, LayerScale2d, build_norm

__all__ = ['ATTN_NORMS', 'EfficientAdditiveAttention', 'DropPath',
           'LayerScale2d', 'build_norm']
