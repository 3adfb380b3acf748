"""Small building blocks shared by the SwiftFormer blocks.

Norm layers and stochastic depth are mmcv's; the layer scale is our own
(see :class:`LayerScale2d`).
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath

# The norms an NCHW backbone can take as they are. mmcv's registry has more,
# but its LN normalises the last (width) axis and IN drops the batch
# statistics the deploy fold relies on, so those are refused by name.
NORM_TYPES = ('BN', 'BN2d', 'SyncBN', 'GN')


def build_norm(cfg: dict, num_features: int) -> nn.Module:
    """mmcv's ``build_norm_layer`` for an OpenMMLab-style ``norm_cfg``,
    limited to :data:`NORM_TYPES`."""
    norm_type = cfg.get('type')
    if norm_type not in NORM_TYPES:
        raise KeyError(f'norm_cfg type {norm_type!r} is not supported by SwiftFormer (an '
                       f'NCHW backbone); use one of {list(NORM_TYPES)}')
    return build_norm_layer(cfg, num_features)[1]


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of an NCHW residual branch.

    Not mmcv's ``LayerScale``: that one names its parameter ``weight`` with
    shape (C,), while timm and the official checkpoints store
    ``layer_scale.gamma`` of shape (C, 1, 1), which must load as it is.
    """

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def drop_path_or_identity(drop_prob: Optional[float]) -> nn.Module:
    """mmcv's ``DropPath`` (timm's semantics: kept samples scaled by
    ``1 / (1 - drop_prob)``, identity in eval mode), or nothing for 0."""
    return DropPath(drop_prob) if drop_prob else nn.Identity()


__all__ = ['NORM_TYPES', 'DropPath', 'LayerScale2d', 'build_norm', 'drop_path_or_identity']
