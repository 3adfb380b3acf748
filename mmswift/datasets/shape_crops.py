"""A seeded ImageNet-style classification dataset of shape crops.

The demo's stand-in for ImageNet: the detector's visual world (the five
shapes of :mod:`mmswift.datasets.shapes_coco`, their textures, cluttered
backgrounds) in other images, with image-level labels only. Each crop shows
one shape near its centre, possibly overlapping cut-off shapes at its
borders, or -- class ``background`` -- clutter and border shapes only, so
the backbone also learns "no object here". The same seed always gives the
same files. Layout (mmpretrain's ImageNet layout)::

    root/meta/{train,val}.txt        # "train/star/000012.png 3" per line
    root/{train,val}/<class>/000012.png
"""
import os
import os.path as osp
from typing import Dict, Tuple

import numpy as np

from .generated import atomic_dataset_dir, ensure_generated, sample_seed
from .shapes_coco import CLASSES as SHAPES
from .shapes_coco import shape_outline
from .textures import background, texture

CLASSES = SHAPES + ('background',)
SPLITS = {'train': 0, 'val': 1}


def _draw(img: np.ndarray, rng: np.random.Generator, cls: int, cx: float, cy: float,
          r: float) -> None:
    import cv2
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(shape_outline(SHAPES[cls], rng, cx, cy, r)).astype(np.int32)], 1)
    mask = mask.astype(bool)
    img[mask] = np.clip(texture(rng, h, w)[mask], 0, 255).astype(np.uint8)


def render_crop(seed: int, size: int = 64) -> Tuple[np.ndarray, int]:
    """One crop and its label: (uint8 HxWx3 RGB, index into ``CLASSES``)."""
    rng = np.random.default_rng(seed)
    label = int(rng.integers(0, len(CLASSES)))
    img = background(rng, size, size)
    for _ in range(rng.integers(0, 3)):  # cut-off shapes at the borders
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.45, 0.7) * size
        _draw(img, rng, int(rng.integers(0, len(SHAPES))), size / 2 + dist * np.cos(angle),
              size / 2 + dist * np.sin(angle), rng.uniform(0.15, 0.3) * size)
    if label < len(SHAPES):  # the labelled shape, on top
        jitter = rng.uniform(-0.1, 0.1, 2) * size
        _draw(img, rng, label, size / 2 + jitter[0], size / 2 + jitter[1],
              rng.uniform(0.2, 0.42) * size)
    return img, label


def _write_split(root: str, split: str, num: int, size: int, seed: int) -> None:
    import cv2
    for name in CLASSES:
        os.makedirs(osp.join(root, split, name), exist_ok=True)
    lines = []
    for i in range(num):
        img, label = render_crop(sample_seed(seed, SPLITS[split], i), size)
        path = f'{split}/{CLASSES[label]}/{i:06d}.png'
        cv2.imwrite(osp.join(root, path), img[..., ::-1])
        lines.append(f'{path} {label}\n')
    with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
        f.writelines(lines)


def generate_shape_crops(root: str, num_train: int = 20000, num_val: int = 1000,
                         size: int = 64, seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root`` (atomically, see
    :mod:`mmswift.datasets.generated`); returns the annotation file paths."""
    meta = dict(num_train=num_train, num_val=num_val, size=size, seed=seed)
    with atomic_dataset_dir(root, meta) as tmp:
        os.makedirs(osp.join(tmp, 'meta'))
        for split, num in (('train', num_train), ('val', num_val)):
            _write_split(tmp, split, num, size, seed)
    root = osp.abspath(root)
    return {s: osp.join(root, 'meta', f'{s}.txt') for s in SPLITS}


def ensure_shape_crops(root: str, **kwargs) -> bool:
    """Generate the dataset at ``root`` unless a complete one is there."""
    return ensure_generated(root, generate_shape_crops, **kwargs)
