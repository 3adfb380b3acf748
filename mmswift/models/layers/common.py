"""Small building blocks shared by the SwiftFormer blocks."""
from typing import Optional

import torch
import torch.nn as nn

# Norm layers by the names OpenMMLab configs use. Kept here (not mmcv's
# build_norm_layer) so the backbone imports with only torch and mmengine.
_NORMS = {
    'BN': nn.BatchNorm2d,
    'BN2d': nn.BatchNorm2d,
    'SyncBN': nn.SyncBatchNorm,
    'GN': nn.GroupNorm,
}


def build_norm(cfg: dict, num_features: int) -> nn.Module:
    """Build a 2d norm layer from an OpenMMLab-style ``norm_cfg``."""
    cfg = dict(cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type not in _NORMS:
        raise KeyError(f'norm type {norm_type!r} is not supported by '
                       f'SwiftFormer; use one of {sorted(_NORMS)}')
    if norm_type == 'GN':
        layer = nn.GroupNorm(num_channels=num_features, **cfg)
    else:
        layer = _NORMS[norm_type](num_features, **cfg)
    for p in layer.parameters():
        p.requires_grad = requires_grad
    return layer


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of an NCHW residual branch."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


def drop_path_or_identity(drop_prob: Optional[float]) -> nn.Module:
    return DropPath(drop_prob) if drop_prob else nn.Identity()
