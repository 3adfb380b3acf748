"""The energy-in-mask ratio: "the features localize objects" as a number.

With per-pixel energy ``E = mean_c F_c^2`` upsampled to the image,
``ratio = (sum of E on the objects / sum of E) / (objects' share of the
image)``. 1.0 means the energy ignores where the objects are; a map that is
non-zero only on the objects scores ``1 / share``.
"""
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch

from .drawing import resize_maps
from .inputs import imread_unchanged


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
    return resize_maps(f.pow(2).mean(0, keepdim=True), hw)[0]


def mass_in_mask_ratio(density: torch.Tensor, mask: np.ndarray) -> float:
    """Share of a non-negative h x w ``density`` (upsampled bilinearly to the
    mask's size) on ``mask``, divided by the mask's share of the image: 1.0
    means no localization (also for a density that is zero everywhere)."""
    mask_t = torch.from_numpy(np.asarray(mask, bool))
    share = float(mask_t.float().mean())
    if share <= 0 or share >= 1:
        raise ValueError('the object mask must cover part of the image, not none or all of it')
    e = density.float()
    if tuple(e.shape) != tuple(mask_t.shape):
        e = resize_maps(e[None], tuple(mask_t.shape))[0]
    e = e.clamp_min(0)
    total = float(e.sum())
    if total <= 1e-12 * e.numel():
        return 1.0
    return float(e[mask_t].sum()) / total / share


def energy_in_mask_ratio(feat: torch.Tensor, mask: np.ndarray, centred: bool = True) -> float:
    """Share of feature energy on ``mask`` divided by the mask's share of the
    image: 1.0 means no localization (also for a map with no energy at all,
    which localizes nothing)."""
    mask = np.asarray(mask, bool)
    if not 0 < mask.mean() < 1:
        raise ValueError('the object mask must cover part of the image, not none or all of it')
    return mass_in_mask_ratio(energy_map(feat, mask.shape, centred), mask)


def attention_in_mask_ratio(weights: torch.Tensor, mask: np.ndarray) -> float:
    """Share of the additive attention's weight magnitude ``|a_t|`` (an
    h x w map of signed token weights, or 1 x h x w) on ``mask``, over the
    mask's share of the image; the same ratio as the features' energy."""
    w = weights[0] if weights.dim() == 3 else weights
    return mass_in_mask_ratio(w.abs(), mask)


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
        label = imread_unchanged(path)  # label values as stored
        if label is None or label.shape[:2] != tuple(hw):
            raise ValueError(f'--masks: {path} is not a label PNG of the image size {hw}')
        return (label != 0) & (label != 255)
