"""Backbone (or FPN) feature maps of any image, drawn and measured.

The image goes through the model's own test-time preprocessing (the config's
test pipeline and data preprocessor), features are cropped to the part of
the padded input that holds the image, and they are drawn over the image at
its original resolution with mmengine's ``Visualizer.draw_featmap`` (JET
heatmaps blended with ``alpha``, the ecosystem's convention).

The energy-in-mask ratio turns "the features localize objects" into a
number: with per-pixel energy ``E = mean_c F_c^2`` upsampled to the image,
``ratio = (sum of E on the objects / sum of E) / (objects' share of the
image)``. 1.0 means the energy ignores where the objects are; a map that is
non-zero only on the objects scores ``1 / share``.
"""
import glob
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REDUCTIONS = ('mean', 'max', 'topk', 'pca')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class ImageReadError(ValueError):
    """An input image that is missing or cannot be decoded."""


# ---------------------------------------------------------------- inputs
def collect_images(inputs: str) -> List[str]:
    """One image, every image in a folder, or a glob pattern."""
    if osp.isdir(inputs):
        paths = sorted(p for p in glob.glob(osp.join(inputs, '*'))
                       if p.lower().endswith(IMAGE_EXTS))
        if not paths:
            raise ImageReadError(f'{inputs}: folder holds no images ({", ".join(IMAGE_EXTS)})')
        return paths
    if any(c in inputs for c in '*?['):
        paths = sorted(glob.glob(inputs))
        if not paths:
            raise ImageReadError(f'{inputs}: pattern matches no files')
        return paths
    return [inputs]


def read_rgb(path: str) -> np.ndarray:
    """An RGB uint8 image; grayscale is replicated, RGBA composited on white."""
    import cv2
    if not osp.isfile(path):
        raise ImageReadError(f'{path}: no such file')
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f'{path}: not a readable image')
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF
        img = (img.astype(np.float32) / max(float(img.max()), 1.0) * 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[..., 3:].astype(np.float32) / 255
        img = (img[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------- model
def crop_to_image(feat: torch.Tensor, input_width: int,
                  img_shape: Tuple[int, int]) -> Tuple[torch.Tensor, int]:
    """Keep the part of a C x h x w feature map that covers the image, not
    the padding; returns it and its stride (each stride-2 step rounds up)."""
    stride = max(1, round(input_width / feat.shape[-1]))
    h, w = -(-img_shape[0] // stride), -(-img_shape[1] // stride)
    return feat[:, :h, :w], stride


@dataclass
class FeatureExtractor:
    """A model and its test-time preprocessing, for feature extraction."""
    backbone: nn.Module
    neck: Optional[nn.Module]
    pipeline: Optional[object]  # mmcv Compose over an ndarray, or None
    data_preprocessor: Optional[nn.Module]

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, after_neck: bool = False
                 ) -> Tuple[List[torch.Tensor], List[int]]:
        """Features (C x h x w each, cropped to the image) and their strides."""
        if self.pipeline is None:  # bare backbone: ImageNet normalisation
            x = torch.from_numpy(rgb).permute(2, 0, 1).float()
            mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
            std = torch.tensor(IMAGENET_STD)[:, None, None]
            inputs, valid = ((x - mean) / std)[None], rgb.shape[:2]
        else:
            packed = self.pipeline(dict(img=rgb[..., ::-1].copy(), img_id=0))
            data = self.data_preprocessor(
                dict(inputs=[packed['inputs']], data_samples=[packed['data_samples']]), False)
            inputs = data['inputs']
            valid = data['data_samples'][0].img_shape
        feats = self.backbone(inputs)
        if after_neck:
            if self.neck is None:
                raise ValueError('--after-neck needs a det or seg config with a neck')
            feats = self.neck(feats)
        out, strides = [], []
        for f in feats:
            cropped, stride = crop_to_image(f[0], inputs.shape[-1], valid)
            out.append(cropped.float())
            strides.append(stride)
        return out, strides


def _test_pipeline(cfg) -> object:
    from mmcv.transforms import Compose
    pipeline = []
    for t in cfg.test_dataloader.dataset.pipeline:
        t = dict(t)
        if t['type'] in ('LoadImageFromFile', 'mmdet.LoadImageFromFile'):
            t = dict(type='LoadImageFromNDArray')
        elif t['type'] == 'LoadAnnotations':
            continue
        elif t['type'] in ('PackDetInputs', 'PackSegInputs'):
            t['meta_keys'] = ('img_id', 'ori_shape', 'img_shape', 'scale_factor')
        pipeline.append(t)
    return Compose(pipeline)


def build_feature_extractor(config: Optional[str] = None, arch: Optional[str] = None,
                            checkpoint: Optional[str] = None,
                            device: str = 'cpu', deploy: bool = True) -> FeatureExtractor:
    """From a det/seg config (with its preprocessing) or a backbone ``arch``;
    with ``deploy`` the backbone runs in its deploy form.

    ``checkpoint``: a Mask R-CNN / Semantic FPN checkpoint, or an ImageNet
    backbone checkpoint in any format the backbone loads. Without one the
    weights are random (the backbone's own initialisation).
    """
    import mmswift  # noqa: F401
    from mmswift.apis import switch_backbone_to_deploy
    from mmswift.models import SwiftFormer
    from mmswift.models.pretrained import (extract_state_dict, detect_format,
                                           load_pretrained, read_checkpoint)
    if (config is None) == (arch is None):
        raise ValueError('give either a config or a backbone arch')
    if checkpoint is not None and not osp.exists(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    if arch is not None:
        backbone = SwiftFormer(arch).eval()
        if checkpoint:
            load_pretrained(backbone, checkpoint)
        if deploy:
            switch_backbone_to_deploy(backbone)
        return FeatureExtractor(backbone.to(device), None, None, None)

    from mmswift.apis import build_model_from_config
    model, cfg = build_model_from_config(config)  # random weights until loaded below
    if checkpoint:
        sd = extract_state_dict(read_checkpoint(checkpoint), checkpoint)
        if detect_format(sd) == 'mmswift' and any(not k.startswith('backbone.') for k in sd):
            from mmengine.runner import load_checkpoint
            load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                            logger='current')
        else:
            load_pretrained(model.backbone, checkpoint)
    if deploy:
        switch_backbone_to_deploy(model)
    model.to(device)
    return FeatureExtractor(model.backbone, getattr(model, 'neck', None),
                            _test_pipeline(cfg), model.data_preprocessor)


# --------------------------------------------------------------- drawing
def _resize_maps(maps: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps[None], size=hw, mode='bilinear', align_corners=False)[0]


def pca_rgb(feat: torch.Tensor) -> torch.Tensor:
    """The first three principal components of the channels, as 3 x h x w in [0, 1]."""
    c, h, w = feat.shape
    x = feat.reshape(c, -1).T
    x = x - x.mean(0, keepdim=True)
    q = min(3, c, x.shape[0])
    _, _, v = torch.pca_lowrank(x, q=q, center=False)
    comps = (x @ v[:, :q]).T.reshape(q, h, w)
    if q < 3:
        comps = torch.cat([comps, comps.new_zeros(3 - q, h, w)])
    lo = comps.flatten(1).min(1)[0][:, None, None]
    hi = comps.flatten(1).max(1)[0][:, None, None]
    return (comps - lo) / (hi - lo).clamp_min(1e-12)


def draw_stage(rgb: np.ndarray, feat: torch.Tensor, reduction: str = 'mean',
               topk: int = 8, alpha: float = 0.5) -> np.ndarray:
    """One feature map over the image, at the image's resolution."""
    from mmengine.visualization import Visualizer
    h, w = rgb.shape[:2]
    if reduction == 'mean':
        m = _resize_maps(feat.mean(0, keepdim=True), (h, w))
        return Visualizer.draw_featmap(m, rgb, channel_reduction=None, topk=0, alpha=alpha)
    if reduction == 'max':  # draw_featmap's select_max: the channel of largest sum
        idx = int(feat.sum(dim=(1, 2)).argmax())
        m = _resize_maps(feat[idx:idx + 1], (h, w))
        return Visualizer.draw_featmap(m, rgb, channel_reduction=None, topk=0, alpha=alpha)
    if reduction == 'topk':  # a grid of the top-k channels, each over a small image
        cols = int(np.ceil(np.sqrt(topk)))
        rows = int(np.ceil(topk / cols))
        scale = min(1.0, 256 / max(h, w))
        tile = (max(1, int(h * scale)), max(1, int(w * scale)))
        return Visualizer.draw_featmap(feat, rgb, channel_reduction=None, topk=topk,
                                       arrangement=(rows, cols), resize_shape=tile,
                                       alpha=alpha)
    if reduction == 'pca':
        colours = (_resize_maps(pca_rgb(feat), (h, w)).permute(1, 2, 0).numpy() * 255)
        return (rgb * (1 - alpha) + colours * alpha).astype(np.uint8)
    raise ValueError(f'reduction {reduction!r}; expected one of {REDUCTIONS}')


def _titled(img: np.ndarray, title: str, height: int) -> np.ndarray:
    import cv2
    scale = height / img.shape[0]
    img = cv2.resize(img, (max(1, int(round(img.shape[1] * scale))), height),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    bar = np.full((28, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], 0)


def draw_figure(rgb: np.ndarray, feats: Sequence[torch.Tensor], strides: Sequence[int],
                stages: Sequence[int], reduction: str = 'mean', topk: int = 8,
                alpha: float = 0.5, after_neck: bool = False,
                height: Optional[int] = None) -> np.ndarray:
    """The input beside the chosen stages' drawings, in a row.

    ``height`` defaults to the image's own height (capped at 1024 for the
    figure; each panel is drawn at the input's resolution first)."""
    height = height or min(rgb.shape[0], 1024)
    panels = [_titled(rgb, 'input', height)]
    name = 'FPN level' if after_neck else 'stage'
    for s in stages:
        drawn = draw_stage(rgb, feats[s], reduction, topk, alpha)
        panels.append(_titled(drawn, f'{name} {s + 1} (stride {strides[s]}), {reduction}', height))
    gap = np.full((height + 28, 6, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, 1)


# ---------------------------------------------------------------- metric
def energy_map(feat: torch.Tensor, hw: Tuple[int, int], centred: bool = True
               ) -> torch.Tensor:
    """Per-pixel feature energy, upsampled to ``hw``.

    ``centred`` (default): ``mean_c (F_c - spatial mean of F_c)^2``, the
    energy of what varies across the image. ``centred=False``:
    ``mean_c F_c^2``. A channel's constant part carries no information about
    *where* anything is, yet in the raw energy it spreads evenly over the
    image and pulls the ratio towards 1 in proportion to its square. Biases
    and BN shifts change that constant part during training for reasons
    unrelated to localization, so the raw ratio can fall as a model learns to
    localize (measured on the demo checkpoints: see the README).
    """
    f = feat.float()
    if centred:
        f = f - f.mean(dim=(-2, -1), keepdim=True)
    return _resize_maps(f.pow(2).mean(0, keepdim=True), hw)[0]


def energy_in_mask_ratio(feat: torch.Tensor, mask: np.ndarray, centred: bool = True) -> float:
    """Share of feature energy on ``mask`` divided by the mask's share of the
    image: 1.0 means no localization (also for a map with no energy at all,
    which localizes nothing)."""
    mask_t = torch.from_numpy(np.asarray(mask, bool))
    share = float(mask_t.float().mean())
    if share <= 0 or share >= 1:
        raise ValueError('the object mask must cover part of the image, not none or all of it')
    e = energy_map(feat, tuple(mask_t.shape), centred).clamp_min(0)
    total = float(e.sum())
    if total <= 1e-12 * e.numel():
        return 1.0
    return float(e[mask_t].sum()) / total / share


class ObjectMasks:
    """Ground-truth object masks by image file name.

    ``source``: a COCO instance json (objects = union of its instances), or a
    folder / single label PNG (objects = pixels whose label is not 0 and not
    255, ADE20K's "other" and ignore values).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.coco = None
        if source.endswith('.json'):
            from pycocotools.coco import COCO
            if not osp.isfile(source):
                raise FileNotFoundError(f'--masks: no such file {source}')
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(source)
            self.by_name = {osp.basename(i['file_name']): i['id']
                            for i in self.coco.dataset['images']}
        elif not osp.exists(source):
            raise FileNotFoundError(f'--masks: no such file or folder {source}')

    def __call__(self, image_path: str, hw: Tuple[int, int]) -> Optional[np.ndarray]:
        import cv2
        name = osp.basename(image_path)
        if self.coco is not None:
            if name not in self.by_name:
                return None
            mask = np.zeros(hw, bool)
            for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=self.by_name[name])):
                mask |= self.coco.annToMask(ann).astype(bool)[:hw[0], :hw[1]]
            return mask
        path = self.source if osp.isfile(self.source) else \
            osp.join(self.source, osp.splitext(name)[0] + '.png')
        if not osp.isfile(path):
            return None
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if label is None or label.shape[:2] != tuple(hw):
            raise ValueError(f'--masks: {path} is not a label PNG of the image size {hw}')
        return (label != 0) & (label != 255)


def summarize_ratios(ratios: Dict[int, List[float]]) -> Dict[int, float]:
    return {s: float(np.nanmean(v)) for s, v in ratios.items() if v}
