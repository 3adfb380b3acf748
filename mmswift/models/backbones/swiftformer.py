"""SwiftFormer backbone for dense prediction (mmdet / mmseg).

Reference: Shaker et al., "SwiftFormer: Efficient Additive Attention for
Transformer-based Real-time Mobile Vision Applications", ICCV 2023.
Module and parameter names follow timm's ``swiftformer.py``, so timm state
dicts load as they are and the other formats convert by renaming keys
(see :mod:`mmswift.models.pretrained`).
"""
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmswift.errors import CheckpointError, ConfigError
from mmswift.registry import MODELS
from ..kernels import BlockKernels, KernelConfig
from ..layers import (ATTN_NORMS, EfficientAdditiveAttention, LayerScale2d, build_norm,
                      foldable, fuse_bn_conv1x1, fuse_conv_bn, scaled_output)
from ..layers.common import drop_path_or_identity
from ..pretrained import load_pretrained


class ConvEncoder(nn.Module):
    """3x3 depth-wise conv, norm, 1x1 expand, GELU, 1x1 project, residual."""

    def __init__(self, dim: int, hidden_dim: int, drop_path: float = 0.0,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = build_norm(norm_cfg, dim)
        self.pwconv1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden_dim, dim, 1)
        self.layer_scale = LayerScale2d(dim, 1.0)
        self.drop_path = drop_path_or_identity(drop_path)
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.drop_path(self.layer_scale(y))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BN into the depth-wise conv, the layer scale into pwconv2."""
        if self.deploy:
            return
        if foldable(self.norm):
            self.dwconv, self.norm = fuse_conv_bn(self.dwconv, self.norm), nn.Identity()
        self.pwconv2 = scaled_output(self.pwconv2, self.layer_scale.gamma)
        self.layer_scale = nn.Identity()
        self.deploy = True


class LocalRepresentation(ConvEncoder):
    """The SwiftFormer block's local mixing: a ConvEncoder of width ``dim``."""

    def __init__(self, dim: int, norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__(dim, hidden_dim=dim, norm_cfg=norm_cfg)


class ConvMlp(nn.Module):
    """Norm, 1x1 expand, GELU, 1x1 project (no residual of its own)."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.norm1 = build_norm(norm_cfg, dim)
        self.fc1 = nn.Conv2d(dim, hidden_dim, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_dim, dim, 1)
        self.drop = nn.Dropout(drop)
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(self.norm1(x))))
        return self.drop(self.fc2(x))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold the BN in front into fc1 (exact: fc1 is 1x1, unpadded)."""
        if not self.deploy and foldable(self.norm1):
            self.fc1, self.norm1 = fuse_bn_conv1x1(self.norm1, self.fc1), nn.Identity()
        self.deploy = True


class SwiftFormerBlock(nn.Module):
    """SwiftFormer encoder: local representation, additive attention, MLP."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-5,
                 attn_norm: str = 'l2',
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.local_representation = LocalRepresentation(dim, norm_cfg)
        self.attn = EfficientAdditiveAttention(dim, attn_norm=attn_norm)
        self.linear = ConvMlp(dim, hidden_dim=int(dim * mlp_ratio), drop=drop, norm_cfg=norm_cfg)
        self.layer_scale_1 = LayerScale2d(dim, layer_scale_init_value)
        self.layer_scale_2 = LayerScale2d(dim, layer_scale_init_value)
        self.drop_path = drop_path_or_identity(drop_path)
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.local_representation(x)
        x = x + self.drop_path(self.layer_scale_1(self.attn(x)))
        return x + self.drop_path(self.layer_scale_2(self.linear(x)))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Fold both layer scales into the branches' last layers, then the
        branches' BatchNorms."""
        if self.deploy:
            return
        self.local_representation.switch_to_deploy()
        self.attn.final = scaled_output(self.attn.final, self.layer_scale_1.gamma)
        self.linear.fc2 = scaled_output(self.linear.fc2, self.layer_scale_2.gamma)
        self.linear.switch_to_deploy()
        self.layer_scale_1, self.layer_scale_2 = nn.Identity(), nn.Identity()
        self.deploy = True


class Downsample(nn.Module):
    """3x3 stride-2 conv + norm between stages (the reference's Embedding)."""

    def __init__(self, in_dim: int, out_dim: int,
                 norm_cfg: dict = dict(type='BN')) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_dim, out_dim, 3, stride=2, padding=1)
        self.norm = build_norm(norm_cfg, out_dim)
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        if not self.deploy and foldable(self.norm):
            self.proj, self.norm = fuse_conv_bn(self.proj, self.norm), nn.Identity()
        self.deploy = True


class Stem(nn.Sequential):
    """Two 3x3 stride-2 conv-norm-ReLU steps (keys ``stem.0`` .. ``stem.5``)."""

    def __init__(self, in_channels: int, dim: int, norm_cfg: dict) -> None:
        super().__init__(
            nn.Conv2d(in_channels, dim // 2, 3, stride=2, padding=1),
            build_norm(norm_cfg, dim // 2), nn.ReLU(inplace=True),
            nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1),
            build_norm(norm_cfg, dim), nn.ReLU(inplace=True))
        self.deploy = False

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        for conv, norm in ((0, 1), (3, 4)):
            if not self.deploy and foldable(self[norm]):
                self[conv], self[norm] = fuse_conv_bn(self[conv], self[norm]), nn.Identity()
        self.deploy = True


class SwiftFormerStage(nn.Module):
    """An optional downsample, ``depth - 1`` ConvEncoders, one SwiftFormer block.

    As in the official code, stochastic depth acts only on the SwiftFormer
    block; the ConvEncoders are built without it.
    """

    def __init__(self, in_dim: int, dim: int, depth: int, downsample: bool,
                 drop_path: float, mlp_ratio: float,
                 drop_rate: float, layer_scale_init_value: float,
                 attn_norm: str, norm_cfg: dict) -> None:
        super().__init__()
        self.downsample = (Downsample(in_dim, dim, norm_cfg=norm_cfg)
                           if downsample else nn.Identity())
        blocks: List[nn.Module] = [
            ConvEncoder(dim, int(dim * mlp_ratio), norm_cfg=norm_cfg)
            for _ in range(depth - 1)
        ]
        blocks.append(
            SwiftFormerBlock(dim, mlp_ratio=mlp_ratio, drop=drop_rate, drop_path=drop_path,
                             layer_scale_init_value=layer_scale_init_value,
                             attn_norm=attn_norm, norm_cfg=norm_cfg))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


@MODELS.register_module()
class SwiftFormer(BaseModule):
    """SwiftFormer backbone emitting multi-scale features (strides 4-32).

    Args:
        arch: ``'xs' | 's' | 'l1' | 'l3'`` (any case) or a dict with
            ``layers`` (blocks per stage) and ``embed_dims`` (widths).
        in_channels: input image channels.
        out_indices: stages to emit (0..3, negative allowed).
        out_norm_cfg: norm applied to each emitted stage (the official
            feature branch used BN); ``None`` emits the raw stage outputs.
        out_channels_last: on CPU, emit the features in channels_last
            memory (the blocks' own layout there), so that the neck and heads
            convolve in it too (Semantic FPN-L1 14 % faster). Only for
            consumers that respect strides; mmcv's CPU RoIAlign reads NCHW
            memory, so a detector whose RoI extractor uses it refuses this
            (see :func:`check_feature_consumers`). Off: the features come
            back in the input's layout.
        kernels: ``'auto'`` (default) runs the blocks' fast CPU and inference
            forms where they apply, ``'plain'`` each block's own
            ``forward()``, the reference computation (for debugging, new
            hardware, or to rule the fast forms out); a dict
            ``dict(type='auto', rows_per_block=..., recompute_mlp_min_bytes=...)``
            sets the CPU thresholds. See :mod:`mmswift.models.kernels`.
        frozen_stages: -1 freezes nothing, 0 the stem, ``k`` the stem and
            stages ``< k`` together with their output norms.
        norm_eval: keep every BN in eval mode while training (frozen stats).
        mlp_ratio: hidden width of the MLPs relative to the stage width.
        drop_rate: dropout inside the SwiftFormer blocks' MLPs.
        drop_path_rate: stochastic depth, rising linearly over all blocks;
            as in the official code only the SwiftFormer blocks use it.
        layer_scale_init_value: initial layer scale of the attention and MLP
            branches of the SwiftFormer blocks (ConvEncoders start at 1).
        attn_norm: ``'l2'`` (official since July 2023) or ``'softmax'`` (the
            earlier release and the HuggingFace port); see
            :class:`EfficientAdditiveAttention`.
        norm_cfg: norm layers inside the network.
        init_cfg: e.g. ``dict(type='Pretrained', checkpoint=PATH)``; official,
            timm, HuggingFace and mmswift/mmdet/mmseg checkpoints are all
            recognised and converted.
        pretrained: deprecated alias of a ``Pretrained`` init_cfg, accepted
            because mmseg's ``EncoderDecoder`` forwards ``model.pretrained``.
    """

    arch_settings: Dict[str, Dict[str, List[int]]] = {
        'xs': dict(layers=[3, 3, 6, 4], embed_dims=[48, 56, 112, 220]),
        's': dict(layers=[3, 3, 9, 6], embed_dims=[48, 64, 168, 224]),
        'l1': dict(layers=[4, 3, 10, 5], embed_dims=[48, 96, 192, 384]),
        'l3': dict(layers=[4, 4, 12, 6], embed_dims=[64, 128, 320, 512]),
    }
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'xs',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: Optional[dict] = dict(type='BN'),
                 out_channels_last: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 mlp_ratio: float = 4.0,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 layer_scale_init_value: float = 1e-5,
                 attn_norm: str = 'l2',
                 norm_cfg: dict = dict(type='BN'),
                 kernels: Union[str, dict] = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 pretrained: Optional[str] = None) -> None:
        if pretrained is not None:  # mmseg's EncoderDecoder passes this
            if init_cfg is not None:
                raise ConfigError('SwiftFormer: set either init_cfg or the '
                                 'deprecated pretrained, not both')
            warnings.warn('SwiftFormer: pretrained= is deprecated, use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...)")
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch_name, arch = self._parse_arch(arch)
        self.layers: List[int] = list(arch['layers'])
        self.embed_dims: List[int] = list(arch['embed_dims'])
        if attn_norm not in ATTN_NORMS:
            raise ConfigError(f'SwiftFormer: attn_norm={attn_norm!r} is not '
                             f'one of {ATTN_NORMS}')
        self.attn_norm = attn_norm
        self.out_indices = self._parse_out_indices(out_indices)
        self.out_channels_last = out_channels_last
        self.kernels = kernels
        if not -1 <= frozen_stages <= self.num_stages:
            raise ConfigError(f'SwiftFormer: frozen_stages={frozen_stages} must '
                             f'be in [-1, {self.num_stages}]')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        self.deploy = False
        c0 = self.embed_dims[0]
        self.stem = Stem(in_channels, c0, norm_cfg)

        # the rate rises linearly over all blocks; each stage's SwiftFormer
        # block (its last) takes the rate of its position
        total = sum(self.layers)
        stages, start, prev = [], 0, c0
        for i, (depth, dim) in enumerate(zip(self.layers, self.embed_dims)):
            stages.append(
                SwiftFormerStage(prev, dim, depth, downsample=i > 0,
                                 drop_path=drop_path_rate * (start + depth - 1)
                                 / max(total - 1, 1),
                                 mlp_ratio=mlp_ratio, drop_rate=drop_rate,
                                 layer_scale_init_value=layer_scale_init_value,
                                 attn_norm=attn_norm, norm_cfg=norm_cfg))
            start, prev = start + depth, dim
        self.stages = nn.Sequential(*stages)

        for i in self.out_indices:
            norm = (build_norm(out_norm_cfg, self.embed_dims[i])
                    if out_norm_cfg is not None else nn.Identity())
            self.add_module(f'norm{i}', norm)
        self.out_channels = [self.embed_dims[i] for i in self.out_indices]

        self._init_reference_weights()
        self._freeze_stages()
        print_log(f'SwiftFormer-{self.arch_name.upper()}: {self.kernels.describe()}',
                  logger='current')

    # ------------------------------------------------------------------ #
    @property
    def kernels(self) -> KernelConfig:
        """How the blocks run (see the ``kernels`` argument); assign
        ``'plain'``, ``'auto'`` or a dict to change it on a built model."""
        return self._blocks.cfg

    @kernels.setter
    def kernels(self, cfg: Union[str, dict, KernelConfig]) -> None:
        self._blocks = BlockKernels(KernelConfig.build(cfg))

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> Tuple[str, dict]:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_settings:
                raise ConfigError(
                    f'SwiftFormer: unknown arch {arch!r}; valid variants are '
                    f'{", ".join(cls.arch_settings)} (any case), or a dict with '
                    f'"layers" and "embed_dims"; fix model.backbone.arch in the config')
            return key, cls.arch_settings[key]
        if not isinstance(arch, dict) or not {'layers', 'embed_dims'} <= set(arch):
            raise TypeError(f'SwiftFormer: arch must be a variant name or a '
                            f'dict with "layers" and "embed_dims", got {arch!r}')
        if not (len(arch['layers']) == len(arch['embed_dims']) == cls.num_stages):
            raise ConfigError(f'SwiftFormer: arch needs {cls.num_stages} '
                             f'"layers" and "embed_dims", got {arch!r}')
        if min(arch['layers']) < 1:
            raise ConfigError(f'SwiftFormer: every stage needs at least one '
                             f'block (the SwiftFormer block), got {arch!r}')
        return 'custom', dict(arch)

    @classmethod
    def _parse_out_indices(cls, out_indices: Sequence[int]) -> List[int]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for idx in out_indices:
            if not -cls.num_stages <= idx < cls.num_stages:
                raise IndexError(f'SwiftFormer: out_indices entry {idx} is not '
                                 f'a stage index in [-4, 3]')
            parsed.append(idx % cls.num_stages)
        if len(set(parsed)) != len(parsed):
            raise ConfigError(f'SwiftFormer: out_indices {list(out_indices)} '
                             f'names a stage twice')
        return sorted(parsed)

    def _init_reference_weights(self) -> None:
        """The reference's init: truncated normal (std .02) convs/linears."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Load a pretrained checkpoint of any supported format.

        mmengine's ``PretrainedInit`` would load keys verbatim; SwiftFormer
        checkpoints come in four layouts, so ``Pretrained`` is handled here.
        """
        init_cfg = self.init_cfg
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained':
            load_pretrained(self, init_cfg['checkpoint'],
                            prefix=init_cfg.get('prefix'),
                            map_location=init_cfg.get('map_location', 'cpu'),
                            what='model.backbone.init_cfg.checkpoint')
            self._is_init = True
            return
        super().init_weights()

    # ------------------------------------------------------------------ #
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        # Features come back in the caller's layout (some consumers, mmcv's
        # CPU RoIAlign, index NCHW memory directly) unless out_channels_last
        # asks for channels_last on CPU.
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        out_format = (torch.channels_last if channels_last or
                      (self.out_channels_last and x.device.type == 'cpu')
                      else torch.contiguous_format)
        x = self._blocks.layers(self.stem, self._blocks.prepare(x, self.training))
        outs = []
        for i, stage in enumerate(self.stages):
            x = self._blocks.stage(stage, x)
            if i in self.out_indices:
                out = self._blocks.layers(getattr(self, f'norm{i}'), x)
                outs.append(out.contiguous(memory_format=out_format))
        return tuple(outs)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        """Refuse a folded state dict for a training-form backbone and the
        other way round, whatever loads it (mmengine loads non-strictly and
        would leave every BatchNorm and layer scale as initialised)."""
        mine = [k for k in state_dict if k.startswith(prefix + 'stages.') and '.blocks.' in k]
        if mine:
            folded = not any('layer_scale' in k for k in mine)
            if folded != self.deploy:
                have = 'a deploy-form (folded)' if folded else 'a training-form'
                raise CheckpointError(
                    f'{prefix}stages.*: the weights are {have} state dict but the backbone is '
                    f'in its {"deploy" if self.deploy else "training"} form; '
                    + ('load the checkpoint saved before switch_to_deploy(), or call '
                       'switch_to_deploy() after loading' if folded else
                       'load them before switch_to_deploy()'))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        modules: List[nn.Module] = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        for m in modules:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    @torch.no_grad()
    def switch_to_deploy(self) -> 'SwiftFormer':
        """The inference form, in place: every block folds its BatchNorms
        and layer scales into its convolutions and merges the attention's
        projections; only the output norms remain. It computes what the
        eval-mode training form computes, and cannot be trained."""
        if self.training:
            raise RuntimeError('switch_to_deploy() folds eval-mode BatchNorm statistics: '
                               'call model.eval() first')
        for m in self.modules():
            if m is not self and hasattr(m, 'switch_to_deploy'):
                m.switch_to_deploy()
        self.requires_grad_(False)
        self.deploy = True
        return self

    def train(self, mode: bool = True) -> 'SwiftFormer':
        if mode and self.deploy:
            raise RuntimeError('this SwiftFormer was switched to its deploy form '
                               '(BNs folded) and cannot be trained; rebuild it')
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
