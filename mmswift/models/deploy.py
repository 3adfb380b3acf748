"""The deploy form of SwiftFormer: same function, less work at inference.

In eval mode every BatchNorm is an affine map and every layer scale a
per-channel product, so both fold into a neighbouring linear map:

* BN after a conv (stem, ConvEncoder/LocalRepresentation depth-wise conv,
  downsample): ``BN(conv(x)) = conv'(x)`` with scaled weights and bias;
* BN before a 1x1 conv (the MLP's ``norm1``): ``fc1(BN(x)) = fc1'(x)``,
  exact because a 1x1 conv has no padding;
* a layer scale after the last 1x1 conv / linear of a branch (ConvEncoder
  ``pwconv2``, MLP ``fc2``, attention ``final``) scales that layer's output
  rows.

Only the output norms stay (they follow a residual sum, nothing to fold
into). The result computes what the eval-mode training form computes, within
float rounding; it cannot be trained further.
"""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .backbones.swiftformer import (ConvEncoder, ConvMlp, Downsample, SwiftFormer,
                                    SwiftFormerBlock)
from .layers import LayerScale2d


def _bn_affine(bn: _BatchNorm):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    return scale, shift


def _conv_with_bias(conv: nn.Conv2d) -> torch.Tensor:
    return conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """``bn(conv(x))`` as one conv."""
    scale, shift = _bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode).to(conv.weight)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_(_conv_with_bias(conv) * scale + shift)
    return fused


@torch.no_grad()
def fuse_bn_conv1x1(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` as one conv, for a 1x1, ungrouped ``conv``."""
    assert conv.kernel_size == (1, 1) and conv.groups == 1
    scale, shift = _bn_affine(bn)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, 1, bias=True).to(conv.weight)
    w = conv.weight[:, :, 0, 0]
    fused.weight.copy_((w * scale[None, :])[:, :, None, None])
    fused.bias.copy_(_conv_with_bias(conv) + w @ shift)
    return fused


@torch.no_grad()
def scale_output(layer: nn.Module, gamma: torch.Tensor) -> None:
    """Fold a per-output-channel scale into a conv or linear layer, in place."""
    g = gamma.reshape(-1)
    layer.weight.mul_(g.reshape(-1, *([1] * (layer.weight.ndim - 1))))
    if layer.bias is not None:
        layer.bias.mul_(g)


def _fold_conv_encoder(block: ConvEncoder) -> None:
    if isinstance(block.norm, _BatchNorm):
        block.dwconv = fuse_conv_bn(block.dwconv, block.norm)
        block.norm = nn.Identity()
    if isinstance(block.layer_scale, LayerScale2d):
        scale_output(block.pwconv2, block.layer_scale.gamma)
        block.layer_scale = nn.Identity()


def _fold_mlp(mlp: ConvMlp, layer_scale: nn.Module) -> nn.Module:
    if isinstance(mlp.norm1, _BatchNorm):
        mlp.fc1 = fuse_bn_conv1x1(mlp.norm1, mlp.fc1)
        mlp.norm1 = nn.Identity()
    if isinstance(layer_scale, LayerScale2d):
        scale_output(mlp.fc2, layer_scale.gamma)
        return nn.Identity()
    return layer_scale


@torch.no_grad()
def switch_to_deploy(backbone: SwiftFormer) -> SwiftFormer:
    """Fold BNs and layer scales of an eval-mode SwiftFormer, in place."""
    if backbone.training:
        raise RuntimeError('switch_to_deploy() folds eval-mode BatchNorm statistics: '
                           'call model.eval() first')
    stem = list(backbone.stem)
    backbone.stem = nn.Sequential(fuse_conv_bn(stem[0], stem[1]), stem[2],
                                  fuse_conv_bn(stem[3], stem[4]), stem[5])
    for stage in backbone.stages:
        if isinstance(stage.downsample, Downsample):
            ds = stage.downsample
            ds.proj = fuse_conv_bn(ds.proj, ds.norm)
            ds.norm = nn.Identity()
        for block in stage.blocks:
            if isinstance(block, SwiftFormerBlock):
                _fold_conv_encoder(block.local_representation)
                if isinstance(block.layer_scale_1, LayerScale2d):
                    scale_output(block.attn.final, block.layer_scale_1.gamma)
                    block.layer_scale_1 = nn.Identity()
                block.layer_scale_2 = _fold_mlp(block.linear, block.layer_scale_2)
            else:
                _fold_conv_encoder(block)
    backbone.deploy = True
    return backbone
