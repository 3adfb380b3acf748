"""Datasets of COCO train2017's and ADE20K's shape, to time what
``tools/train.py`` does before the first iteration (the data check and the
dataset build) at the real scale, without downloading either.

COCO: 118,287 images of the real size mix, about 860,000 instances with
polygons (8 to 40 vertices, COCO's 80 category ids), one small JPEG per
image (the header check reads each one). ADE20K: 20,210 image / label PNG
pairs. The files are tiny; what is measured is the per-sample work and the
annotation parsing, which do not depend on the pixels.
"""
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict

import numpy as np

COCO_IMAGES = 118_287
COCO_INSTANCES = 860_001
ADE_PAIRS = 20_210
_COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in
                      (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
_SIZES = [(640, 480), (480, 640), (640, 427), (427, 640), (640, 424), (500, 375), (640, 512)]


def _tiny_image(ext: str, w: int = 16, h: int = 12) -> bytes:
    import cv2
    img = np.full((h, w, 3), 127, np.uint8) if ext == '.jpg' else np.zeros((h, w), np.uint8)
    return cv2.imencode(ext, img)[1].tobytes()


def generate_coco_scale(root: str, images: int = COCO_IMAGES,
                        instances: int = COCO_INSTANCES, seed: int = 0) -> str:
    """``root/annotations/instances_train2017.json`` and ``root/train2017/``;
    returns the annotation path. Skips what already exists."""
    ann_path = osp.join(root, 'annotations', 'instances_train2017.json')
    img_dir = osp.join(root, 'train2017')
    os.makedirs(osp.dirname(ann_path), exist_ok=True)
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    jpeg = _tiny_image('.jpg')
    imgs = []
    for i in range(images):
        w, h = _SIZES[rng.integers(len(_SIZES))]
        name = f'{i + 1:012d}.jpg'
        imgs.append(dict(id=i + 1, file_name=name, width=int(w), height=int(h)))
        path = osp.join(img_dir, name)
        if not osp.exists(path):
            with open(path, 'wb') as f:
                f.write(jpeg)
    if osp.exists(ann_path):
        return ann_path
    owner = rng.integers(0, images, instances)
    anns = []
    for k in range(instances):
        im = imgs[int(owner[k])]
        w, h = im['width'], im['height']
        bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        n = int(rng.integers(8, 41))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        px = x0 + bw / 2 * (1 + np.cos(t) * rng.uniform(0.6, 1.0, n))
        py = y0 + bh / 2 * (1 + np.sin(t) * rng.uniform(0.6, 1.0, n))
        poly = np.round(np.stack([px, py], 1).reshape(-1), 2).tolist()
        anns.append(dict(id=k + 1, image_id=im['id'],
                         category_id=_COCO_CATEGORY_IDS[int(rng.integers(80))],
                         segmentation=[poly], area=round(float(bw * bh * 0.7), 2),
                         bbox=[round(float(x0), 2), round(float(y0), 2),
                               round(float(bw), 2), round(float(bh), 2)], iscrowd=0))
    from mmdet.datasets import CocoDataset  # the 80 names, in the order of the ids
    cats = [dict(id=c, name=name, supercategory='thing')
            for c, name in zip(_COCO_CATEGORY_IDS, CocoDataset.METAINFO['classes'])]
    with open(ann_path, 'w') as f:
        json.dump(dict(images=imgs, annotations=anns, categories=cats), f)
    return ann_path


def generate_ade_scale(root: str, pairs: int = ADE_PAIRS) -> str:
    """``root/images/training/*.jpg`` with ``root/annotations/training/*.png``."""
    img_dir, seg_dir = (osp.join(root, d, 'training') for d in ('images', 'annotations'))
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(seg_dir, exist_ok=True)
    jpeg, png = _tiny_image('.jpg'), _tiny_image('.png')
    for i in range(pairs):
        name = f'ADE_train_{i + 1:08d}'
        for folder, ext, data in ((img_dir, '.jpg', jpeg), (seg_dir, '.png', png)):
            path = osp.join(folder, name + ext)
            if not osp.exists(path):
                with open(path, 'wb') as f:
                    f.write(data)
    return root


_MEASURE = r'''
import json, resource, sys, time
t0 = time.time()
import mmswift  # noqa
from mmengine.config import Config
from mmengine.registry import DATASETS, init_default_scope
cfg = Config.fromfile(sys.argv[1])
cfg.train_dataloader.dataset.data_root = sys.argv[2]
mode = sys.argv[3]
init_default_scope(cfg.default_scope)
start = time.time()
if mode == 'build':  # what the dataset itself needs
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    n = len(ds)
else:
    from mmswift.engine.datacheck import check_datasets
    n = check_datasets(cfg, ('train',), sys.argv[1], sys.argv[4], full=(mode == 'full'))
print(json.dumps(dict(mode=mode, samples=n, seconds=round(time.time() - start, 1),
                      peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))))
'''


def measure(config: str, data_root: str, mode: str, work_dir: str) -> Dict[str, float]:
    """Run ``mode`` ('build': the dataset only; 'check': ``tools/train.py``'s
    data check, which builds it too; 'full': the check decoding every image)
    in a fresh process; its wall time and peak resident memory."""
    proc = subprocess.run([sys.executable, '-c', _MEASURE, config, data_root, mode, work_dir],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'{mode} failed: {proc.stderr[-2000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])
