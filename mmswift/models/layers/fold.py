"""Fold eval-mode BatchNorms and layer scales into neighbouring linear maps.

In eval mode a BatchNorm is a per-channel affine map and a layer scale a
per-channel product, so both can be absorbed by the convolution (or linear
layer) next to them. The blocks' ``switch_to_deploy()`` use these helpers.
"""
import copy
from typing import Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils.fusion import fuse_conv_bn_eval


def bn_affine(bn: _BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode.

    For a BN *in front of* a conv (:func:`fuse_bn_conv1x1`), which neither
    torch nor mmcv folds."""
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    scale = bn.weight * inv_std if bn.affine else inv_std
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    return scale, shift


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """``bn(conv(x))`` as one conv: torch's ``fuse_conv_bn_eval``, which
    folds into a copy of ``conv`` (new tensors; ``bn.eps`` kept; both in eval
    mode, as ``SwiftFormer.switch_to_deploy`` requires; a BN without
    affine parameters counts as weight 1, bias 0). Not mmcv's
    ``fuse_conv_bn``: it replaces ``conv``'s parameters in place and needs an
    affine BN."""
    return fuse_conv_bn_eval(conv, bn)


@torch.no_grad()
def fuse_bn_conv1x1(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` as one conv; exact for a 1x1, ungrouped ``conv``
    because it has no padding for the shift to leak into."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError(f'fuse_bn_conv1x1 needs an ungrouped 1x1 conv, got {conv}')
    scale, shift = bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True).to(conv.weight)
    w = conv.weight[:, :, 0, 0]
    fused.weight.copy_((w * scale[None, :])[:, :, None, None])
    fused.bias.copy_(_bias(conv) + w @ shift)
    return fused


def foldable(norm: nn.Module) -> bool:
    """A BatchNorm with running statistics: an affine map in eval mode. One
    built with ``track_running_stats=False`` normalises by the batch's own
    statistics at inference too, so it stays a layer of its own."""
    return isinstance(norm, _BatchNorm) and norm.running_var is not None


@torch.no_grad()
def scaled_output(layer: nn.Module, gamma: torch.Tensor) -> nn.Module:
    """A copy of a conv or linear layer with its outputs scaled per channel
    by ``gamma``; new tensors, so nothing that holds the old ones changes."""
    scaled = copy.deepcopy(layer)
    g = gamma.reshape(-1)
    scaled.weight.copy_(layer.weight * g.reshape(-1, *([1] * (layer.weight.ndim - 1))))
    if layer.bias is not None:
        scaled.bias.copy_(layer.bias * g)
    return scaled
