"""Backbone (or FPN) feature maps of any image, through the model's own
test-time preprocessing, cropped to the part of the padded input that holds
the image."""
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from mmswift.task import task_of

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def crop_to_image(feat: torch.Tensor, input_width: int,
                  img_shape: Tuple[int, int]) -> Tuple[torch.Tensor, int]:
    """Keep the part of a C x h x w feature map that covers the image, not
    the padding; returns it and its stride (each stride-2 step rounds up)."""
    stride = max(1, round(input_width / feat.shape[-1]))
    h, w = -(-img_shape[0] // stride), -(-img_shape[1] // stride)
    return feat[:, :h, :w], stride


class FeatureExtractor:
    """Backbone (or neck) outputs of one image, caught by forward hooks while
    the model runs: a bare backbone on the ImageNet-normalised image, a
    detector or segmentor through mmdet's ``inference_detector`` / mmseg's
    ``inference_model``, i.e. its own test pipeline and preprocessing."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.is_backbone = not hasattr(model, 'backbone')

    def _run(self, rgb: np.ndarray) -> Tuple[int, Tuple[int, int]]:
        """Runs the model; returns the padded input width and the image's
        shape inside it (after test-time resizing)."""
        if self.is_backbone:
            x = torch.from_numpy(rgb).permute(2, 0, 1).float()
            mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
            std = torch.tensor(IMAGENET_STD)[:, None, None]
            x = ((x - mean) / std)[None].to(next(self.model.parameters()).device)
            self.model(x)
            return x.shape[-1], rgb.shape[:2]
        from mmengine.registry import DefaultScope
        bgr = rgb[..., ::-1].copy()
        task = task_of(self.model.cfg)
        scope = self.model.cfg.default_scope
        # the test pipeline is built at each call, in the current scope: the
        # scope of whichever model was initialised last (mmseg's
        # LoadAnnotations does not take mmdet's with_bbox), so this model's
        with DefaultScope.overwrite_default_scope(scope):
            if task == 'seg':
                from mmseg.apis import inference_model
                result = inference_model(self.model, bgr)
            else:
                from mmdet.apis import inference_detector
                result = inference_detector(self.model, bgr)
        # mmdet records the padded batch shape; mmseg, which pads only for a
        # test_cfg size, the pad shape
        meta = result.metainfo
        return meta.get('batch_input_shape', meta.get('pad_shape'))[1], result.img_shape

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, after_neck: bool = False
                 ) -> Tuple[List[torch.Tensor], List[int]]:
        """Features (C x h x w each, cropped to the image) and their strides."""
        if after_neck and getattr(self.model, 'neck', None) is None:
            raise ValueError('--after-neck needs a det or seg config with a neck')
        module = self.model if self.is_backbone else \
            (self.model.neck if after_neck else self.model.backbone)
        caught = []
        handle = module.register_forward_hook(lambda m, args, out: caught.append(out))
        try:
            width, valid = self._run(rgb)
        finally:
            handle.remove()
        out, strides = [], []
        for f in caught[0]:
            cropped, stride = crop_to_image(f[0], width, valid)
            out.append(cropped.float())
            strides.append(stride)
        return out, strides

    @torch.no_grad()
    def attention(self, rgb: np.ndarray, stages: Optional[List[int]] = None) -> list:
        """The additive attention's token weights of the chosen stages (0-based,
        default all), through the same preprocessing as the features, cropped
        to the image: a list of :class:`~mmswift.visualization.StageAttention`
        with 1 x h x w weights."""
        from .attention import AttentionRecorder
        with AttentionRecorder(self.model, stages) as rec:
            width, valid = self._run(rgb)
        return [m.crop(width, valid) for m in rec.results(width)]


def build_feature_extractor(config: Optional[str] = None, arch: Optional[str] = None,
                            checkpoint: Optional[str] = None,
                            device: str = 'cpu', deploy: bool = True) -> FeatureExtractor:
    """From a det/seg config (built by ``mmdet.apis.init_detector`` /
    ``mmseg.apis.init_model``) or a backbone ``arch``; with ``deploy`` the
    backbone runs in its deploy form.

    ``checkpoint``: a Mask R-CNN / Semantic FPN checkpoint, or an ImageNet
    backbone checkpoint in any format the backbone loads. Without one the
    weights are random (the models' own initialisation).
    """
    import mmswift  # noqa: F401
    from mmswift.apis import switch_backbone_to_deploy
    from mmswift.fileio import read_checkpoint
    from mmswift.models import SwiftFormer
    from mmswift.models.pretrained import detect_format, extract_state_dict, load_pretrained
    if (config is None) == (arch is None):
        raise ValueError('give either a config or a backbone arch')
    if arch is not None:
        backbone = SwiftFormer(arch).eval()
        if checkpoint:
            load_pretrained(backbone, checkpoint, what='CHECKPOINT')
        if deploy:
            switch_backbone_to_deploy(backbone)
        return FeatureExtractor(backbone.to(device))

    from mmswift.apis import init_model
    whole = False
    if checkpoint:  # a detector/segmentor checkpoint, or backbone weights
        sd = extract_state_dict(read_checkpoint(checkpoint, what='CHECKPOINT', mmap=True),
                                checkpoint)
        whole = detect_format(sd) == 'mmswift' and any(not k.startswith('backbone.') for k in sd)
    model = init_model(config, checkpoint if whole else None, device)
    if checkpoint and not whole:
        load_pretrained(model.backbone, checkpoint, what='CHECKPOINT')
    if deploy:
        switch_backbone_to_deploy(model)
    return FeatureExtractor(model)
