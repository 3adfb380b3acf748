from .attention import ATTN_NORMS, EfficientAdditiveAttention
from .common import DropPath, LayerScale2d, build_norm
from .fold import bn_affine, fuse_bn_conv1x1, fuse_conv_bn, scale_output
from .blocked_mlp import mlp_residual
from .inference import use_inference_kernels

__all__ = ['ATTN_NORMS', 'EfficientAdditiveAttention', 'DropPath', 'LayerScale2d',
           'build_norm', 'bn_affine', 'fuse_bn_conv1x1', 'fuse_conv_bn', 'scale_output',
           'mlp_residual', 'use_inference_kernels']
