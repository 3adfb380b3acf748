from .attention import ATTN_NORMS, EfficientAdditiveAttention
from .common import DropPath, LayerScale2d, build_norm
from .fold import bn_affine, foldable, fuse_bn_conv1x1, fuse_conv_bn, scaled_output

__all__ = ['ATTN_NORMS', 'EfficientAdditiveAttention', 'DropPath', 'LayerScale2d',
           'build_norm', 'bn_affine', 'foldable', 'fuse_bn_conv1x1', 'fuse_conv_bn',
           'scaled_output']
