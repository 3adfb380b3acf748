"""A seeded COCO-format instance segmentation dataset of textured shapes.

Each image holds several objects of five classes (the class is the shape;
colour, texture, size, rotation and aspect vary freely) that may overlap,
on cluttered backgrounds. Masks are the *visible* parts after occlusion,
stored as COCO polygons. The same seed always gives the same files.
Layout (mmdet's COCO layout)::

    root/annotations/instances_{train,val}.json
    root/{train,val}/000000.png ...
"""
import json
import os
import os.path as osp
from typing import Dict, List

import numpy as np

from .generated import atomic_dataset_dir, ensure_generated, sample_seed
from .textures import background, texture

CLASSES = ('ellipse', 'triangle', 'rectangle', 'star', 'cross')
SPLITS = {'train': 0, 'val': 1}


def shape_outline(cls: str, rng: np.random.Generator, cx: float, cy: float,
                  r: float) -> np.ndarray:
    """Polygon (N x 2) of one object of class ``cls`` around (cx, cy)."""
    aspect = rng.uniform(0.6, 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    if cls == 'ellipse':
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        pts = np.stack([np.cos(t), aspect * np.sin(t)], 1)
    elif cls == 'triangle':
        t = np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.25, 0.25, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
    elif cls == 'rectangle':
        pts = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]]) * 0.8
    elif cls == 'star':
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        rad = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.35, 0.5))
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], 1)
    else:  # cross (plus sign)
        a = rng.uniform(0.25, 0.4)
        pts = np.array([[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a],
                        [a, 1], [-a, 1], [-a, a], [-1, a], [-1, -a], [-a, -a]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T * r + np.array([cx, cy])


def _visible_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of the visible mask, after an opening that removes the
    one-pixel slivers occlusion leaves (they would become empty polygons)."""
    import cv2
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def render_image(seed: int, size: int = 256, max_objects: int = 6):
    """One image and its instances: (uint8 HxWx3 RGB, [(class_idx, mask)])."""
    import cv2
    rng = np.random.default_rng(seed)
    h = w = size
    img = background(rng, h, w)
    masks, labels = [], []
    for _ in range(rng.integers(2, max_objects + 1)):
        cls = int(rng.integers(0, len(CLASSES)))
        r = rng.uniform(0.07, 0.22) * size
        cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
        poly = shape_outline(CLASSES[cls], rng, cx, cy, r)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        m = m.astype(bool)
        fill = texture(rng, h, w)
        img[m] = np.clip(fill[m], 0, 255).astype(np.uint8)
        for prev in masks:  # the new object occludes the earlier ones
            prev &= ~m
        masks.append(m)
        labels.append(cls)
    instances = [(c, m) for c, m in zip(labels, masks) if m.sum() >= 30]
    return img, instances


def _write_split(root: str, split: str, num: int, size: int, seed: int) -> None:
    import cv2
    from pycocotools import mask as mask_utils
    os.makedirs(osp.join(root, split), exist_ok=True)
    images, anns = [], []
    for i in range(num):
        img, instances = render_image(sample_seed(seed, SPLITS[split], i), size)
        name = f'{i:06d}.png'
        cv2.imwrite(osp.join(root, split, name), img[..., ::-1])
        images.append(dict(id=i + 1, file_name=name, height=size, width=size))
        for cls, m in instances:
            polys = _visible_polygons(m)
            if not polys:
                continue
            # box and area as COCO tools rasterise the stored polygons (what
            # mmdet trains on and the evaluator scores), not the raw mask
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, size, size))
            area = float(mask_utils.area(rle))
            if area < 30:
                continue
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cls + 1,
                             segmentation=polys, area=area,
                             bbox=[float(v) for v in mask_utils.toBbox(rle)], iscrowd=0))
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)])
    with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)


def generate_shapes_coco(root: str, num_train: int = 400, num_val: int = 50,
                         size: int = 256, seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root`` (atomically, see
    :mod:`mmswift.datasets.generated`); returns the annotation file paths."""
    meta = dict(num_train=num_train, num_val=num_val, size=size, seed=seed)
    with atomic_dataset_dir(root, meta) as tmp:
        os.makedirs(osp.join(tmp, 'annotations'))
        _write_split(tmp, 'train', num_train, size, seed)
        _write_split(tmp, 'val', num_val, size, seed)
    root = osp.abspath(root)
    return {s: osp.join(root, 'annotations', f'instances_{s}.json') for s in SPLITS}


def ensure_shapes_coco(root: str, **kwargs) -> bool:
    """Generate the dataset at ``root`` unless a complete one is there."""
    return ensure_generated(root, generate_shapes_coco, **kwargs)
