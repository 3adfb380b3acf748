"""The generated demo datasets: deterministic, well-formed, and loadable."""
import json
import os

import cv2
import numpy as np
import pytest

from mmswift.datasets.scenes_ade import CLASSES as SCENE_CLASSES
from mmswift.datasets.scenes_ade import generate_scenes_ade
from mmswift.datasets.shapes_coco import CLASSES as SHAPE_CLASSES
from mmswift.datasets.shapes_coco import generate_shapes_coco

from .conftest import run_py


def _tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, 'rb').read()
    return out


def test_shapes_are_deterministic_coco_with_polygons(tmp_path):
    a = generate_shapes_coco(str(tmp_path / 'a'), num_train=6, num_val=3, size=96, seed=7)
    generate_shapes_coco(str(tmp_path / 'b'), num_train=6, num_val=3, size=96, seed=7)
    assert _tree(tmp_path / 'a') == _tree(tmp_path / 'b')
    generate_shapes_coco(str(tmp_path / 'c'), num_train=6, num_val=3, size=96, seed=8)
    assert _tree(tmp_path / 'a') != _tree(tmp_path / 'c')

    from pycocotools.coco import COCO
    coco = COCO(a['train'])
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CLASSES)
    assert len(coco.getImgIds()) == 6
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 6 * 2 * 0.8  # 2-6 objects per image, some fully occluded
    assert len({a['category_id'] for a in anns}) >= 3
    for ann in anns:
        mask = coco.annToMask(ann)
        assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
        x, y, w, h = ann['bbox']
        ys, xs = np.nonzero(mask)
        # polygon rasterisation agrees with the visible mask's box to a pixel or two
        assert abs(xs.min() - x) <= 2 and abs(ys.min() - y) <= 2
        assert abs(xs.max() + 1 - (x + w)) <= 2 and abs(ys.max() + 1 - (y + h)) <= 2
    img = cv2.imread(str(tmp_path / 'a' / 'val' / '000000.png'))
    assert img.shape == (96, 96, 3) and img.std() > 10


def test_scenes_have_the_ade20k_layout_and_labels(tmp_path):
    root = generate_scenes_ade(str(tmp_path / 's'), num_train=5, num_val=2, size=64, seed=3)
    for sub in ('images/training', 'images/validation', 'annotations/training',
                'annotations/validation'):
        assert os.path.isdir(os.path.join(root, sub))
    assert sorted(os.listdir(os.path.join(root, 'images/training'))) == \
        [f'{i:06d}.jpg' for i in range(5)]
    labels = [cv2.imread(os.path.join(root, 'annotations/training', f'{i:06d}.png'),
                         cv2.IMREAD_UNCHANGED) for i in range(5)]
    values = np.unique(np.concatenate([lab.ravel() for lab in labels]))
    assert values.min() >= 0 and values.max() <= len(SCENE_CLASSES)
    assert len(values) >= 4  # several classes per few scenes
    assert all(lab.shape == (64, 64) and lab.dtype == np.uint8 for lab in labels)


@pytest.mark.slow
def test_generate_cli_refuses_a_non_empty_folder(tmp_path):
    proc = run_py('tools/generate_demo_data.py', 'scenes', str(tmp_path / 'x'),
                  '--num-train', '2', '--num-val', '1', '--size', '32')
    assert proc.returncode == 0, proc.stderr
    assert json.load(open(tmp_path / 'x' / 'GENERATED'))['num_train'] == 2
    again = run_py('tools/generate_demo_data.py', 'scenes', str(tmp_path / 'x'))
    assert again.returncode == 2 and 'not empty' in again.stderr
