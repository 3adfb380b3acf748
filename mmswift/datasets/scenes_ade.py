"""A seeded semantic segmentation dataset in the ADE20K directory layout.

Scenes are built from regions of six "stuff" classes, each with its own
texture family and hue range (so appearance, not position, tells them
apart), in varied shapes and sizes: a wavy horizon split, blobs, bands and
polygons that overlap. Regions of random unrelated texture are labelled 0
("other"), which ``reduce_zero_label=True`` ignores, as in ADE20K. Layout::

    root/images/{training,validation}/000000.jpg
    root/annotations/{training,validation}/000000.png   (0 = other, 1..6)
"""
import os
import os.path as osp
from typing import Callable, Dict

import numpy as np

from .generated import atomic_dataset_dir, ensure_generated, sample_seed
from .textures import texture

CLASSES = ('sky', 'water', 'grass', 'sand', 'rock', 'brick')
SPLITS = {'training': 0, 'validation': 1}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    import colorsys
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32) * 255


def _grid(h, w):
    return np.mgrid[0:h, 0:w].astype(np.float32)


def _sky(rng, h, w):
    yy, _ = _grid(h, w)
    top, bottom = _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.5, 0.8), 0.9), \
        _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.1, 0.3), 1.0)
    t = (yy / h)[..., None]
    return top * (1 - t) + bottom * t


def _water(rng, h, w):
    yy, xx = _grid(h, w)
    base = _hsv(rng.uniform(0.45, 0.55), rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.7))
    wave = np.sin(yy / rng.uniform(2, 4) + np.sin(xx / rng.uniform(8, 16)) * 2)
    return base + wave[..., None] * 35


def _grass(rng, h, w):
    base = _hsv(rng.uniform(0.22, 0.33), rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.7))
    blades = rng.normal(0, 1, (h // 4 + 1, w)).repeat(4, 0)[:h]  # vertical strokes
    return base + blades[..., None] * 30


def _sand(rng, h, w):
    base = _hsv(rng.uniform(0.10, 0.15), rng.uniform(0.3, 0.5), rng.uniform(0.75, 0.95))
    return base + rng.normal(0, 12, (h, w, 1))


def _rock(rng, h, w):
    import cv2
    v = rng.uniform(0.35, 0.6) * 255
    blotch = cv2.resize(rng.normal(0, 1, (h // 8 + 1, w // 8 + 1)).astype(np.float32),
                        (w, h), interpolation=cv2.INTER_LINEAR)
    return np.full((h, w, 3), v, np.float32) + blotch[..., None] * 30 \
        + rng.normal(0, 5, (h, w, 1))


def _brick(rng, h, w):
    yy, xx = _grid(h, w)
    bh, bw = rng.uniform(6, 10), rng.uniform(14, 22)
    row = (yy // bh).astype(int)
    mortar = (yy % bh < 1.5) | (((xx + (row % 2) * bw / 2) % bw) < 1.5)
    brick = _hsv(rng.uniform(0.0, 0.05), rng.uniform(0.6, 0.8), rng.uniform(0.5, 0.75))
    img = np.broadcast_to(brick, (h, w, 3)).copy()
    img[mortar] = 200
    return img


FILLS: Dict[str, Callable] = dict(sky=_sky, water=_water, grass=_grass, sand=_sand,
                                  rock=_rock, brick=_brick)


def _region(rng, h, w) -> np.ndarray:
    """A random region mask: ellipse, polygon or band, of varied size."""
    import cv2
    m = np.zeros((h, w), np.uint8)
    kind = rng.integers(0, 3)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = rng.uniform(0.1, 0.35) * min(h, w)
    if kind == 0:
        cv2.ellipse(m, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.4, 1))),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        n = rng.integers(3, 9)
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.5, 1.2, n)
        pts = np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)
        cv2.fillPoly(m, [pts.astype(np.int32)], 1)
    else:
        yy, xx = _grid(h, w)
        a = rng.uniform(0, np.pi)
        d = np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)
        m[np.abs(d) < r * 0.4] = 1
    return m.astype(bool)


def render_scene(seed: int, size: int = 256):
    """One scene: (uint8 HxWx3 RGB image, uint8 HxW label with 0 = other)."""
    rng = np.random.default_rng(seed)
    h = w = size
    img = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    yy, xx = _grid(h, w)

    def paint(mask, cls_idx):
        if cls_idx == 0:
            fill = texture(rng, h, w)
        else:
            fill = FILLS[CLASSES[cls_idx - 1]](rng, h, w)
        img[mask] = fill[mask]
        label[mask] = cls_idx

    # a wavy horizon: upper and lower classes
    horizon = h * rng.uniform(0.3, 0.7) + np.sin(xx / rng.uniform(10, 40)) * rng.uniform(0, 12)
    upper, lower = rng.choice(np.arange(1, len(CLASSES) + 1), 2, replace=False)
    paint(yy < horizon, upper)
    paint(yy >= horizon, lower)
    for _ in range(rng.integers(2, 7)):  # overlapping regions, some "other"
        cls_idx = 0 if rng.uniform() < 0.2 else int(rng.integers(1, len(CLASSES) + 1))
        paint(_region(rng, h, w), cls_idx)
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return img, label


def generate_scenes_ade(root: str, num_train: int = 300, num_val: int = 50,
                        size: int = 256, seed: int = 0) -> str:
    """Write the dataset under ``root`` (atomically, see
    :mod:`mmswift.datasets.generated`) and return ``root``."""
    import cv2
    meta = dict(num_train=num_train, num_val=num_val, size=size, seed=seed)
    with atomic_dataset_dir(root, meta) as tmp:
        for split, num in (('training', num_train), ('validation', num_val)):
            os.makedirs(osp.join(tmp, 'images', split))
            os.makedirs(osp.join(tmp, 'annotations', split))
            for i in range(num):
                img, label = render_scene(sample_seed(seed, SPLITS[split], i), size)
                cv2.imwrite(osp.join(tmp, 'images', split, f'{i:06d}.jpg'), img[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                cv2.imwrite(osp.join(tmp, 'annotations', split, f'{i:06d}.png'), label)
    return osp.abspath(root)


def ensure_scenes_ade(root: str, **kwargs) -> bool:
    """Generate the dataset at ``root`` unless a complete one is there."""
    return ensure_generated(root, generate_scenes_ade, **kwargs)
