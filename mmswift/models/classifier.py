"""SwiftFormer image classifier in the official release's layout.

The official model classifies with the backbone, a BatchNorm on the last
stage (``norm``), global average pooling and two linear layers, ``head``
and ``dist_head`` (DeiT-style: the second was trained against a teacher),
whose logits it averages. This module keeps exactly those parts, so what it
learns is written in the official layout (:func:`mmswift.models.pretrained.to_official`)
and fine-tuned through the same door as the official ImageNet checkpoints.
Without a teacher both heads learn the labels, through their average, as
they are used at inference. (mmpretrain's ImageClassifier would be the
natural home, but ``import mmpretrain`` needs torchvision, which does not
import beside torch 2.13.)
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModel

from mmswift.registry import MODELS
from .backbones import SwiftFormer


@MODELS.register_module()
class SwiftFormerClassifier(BaseModel):
    """``(head(p) + dist_head(p)) / 2`` with ``p`` the pooled, normed last stage.

    Args:
        arch: a SwiftFormer variant (``xs``, ``s``, ``l1``, ``l3``).
        num_classes: classifier width.
        drop_path_rate: stochastic depth of the backbone.
        data_preprocessor: mmengine's ``ImgDataPreprocessor`` config.
    """

    def __init__(self, arch: str, num_classes: int, drop_path_rate: float = 0.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # out_indices=(3,): the backbone's norm3 is the official ``norm``
        self.backbone = SwiftFormer(arch, out_indices=(3,), drop_path_rate=drop_path_rate)
        dim = self.backbone.embed_dims[-1]
        self.head = nn.Linear(dim, num_classes)
        self.dist_head = nn.Linear(dim, num_classes)
        for fc in (self.head, self.dist_head):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(inputs)[-1].flatten(2).mean(-1)
        return (self.head(pooled) + self.dist_head(pooled)) / 2

    def forward(self, inputs: torch.Tensor, data_samples: Optional[Sequence[int]] = None,
                mode: str = 'tensor') -> Union[torch.Tensor, dict, List[dict]]:
        logits = self.logits(inputs)
        if mode == 'tensor':
            return logits
        labels = torch.as_tensor(list(data_samples), device=logits.device)
        if mode == 'loss':
            return dict(loss_cls=F.cross_entropy(logits, labels))
        return [dict(pred_label=int(p), gt_label=int(g))
                for p, g in zip(logits.argmax(1), labels)]
