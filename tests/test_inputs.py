"""Images of every size from 32x32 to 2000x3000, any aspect, grayscale and
RGBA files, batch size 1: the backbone and both model types take them."""
import math
import os

import cv2
import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mmswift.apis import build_inferencer
from mmswift.models import SwiftFormer

from .conftest import REPO, randomize_, write_config

_XS = randomize_(SwiftFormer('xs')).eval()


def _stage_size(n: int, stage: int) -> int:
    """Stem (two stride-2 3x3 convs) and each downsampling round up."""
    for _ in range(stage + 2):
        n = math.ceil(n / 2)
    return n


def _check_backbone_takes(h: int, w: int) -> None:
    with torch.no_grad():
        outs = _XS(torch.randn(1, 3, h, w))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        assert out.shape == (1, _XS.embed_dims[i], _stage_size(h, i), _stage_size(w, i))
        assert torch.isfinite(out).all()


@settings(max_examples=8, deadline=None, derandomize=True)
@given(h=st.integers(32, 1024), w=st.integers(32, 1024))
@example(h=32, w=32)
@example(h=33, w=2999)
@example(h=2999, w=33)
def test_backbone_takes_any_size_and_aspect(h, w):
    """Odd sizes of every aspect: the shapes follow the stride arithmetic
    (drawn up to 1024 a side; the arithmetic is the same above)."""
    _check_backbone_takes(h, w)


@pytest.mark.slow
def test_backbone_takes_the_largest_promised_image():
    _check_backbone_takes(2000, 3000)


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('inputs')
    rng = np.random.default_rng(0)
    files = {}
    files['gray_32x32.png'] = rng.integers(0, 255, (32, 32), dtype=np.uint8)
    files['rgba_45x61.png'] = rng.integers(0, 255, (45, 61, 4), dtype=np.uint8)
    files['rgb_2000x3000.jpg'] = rng.integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    files['tall_1000x40.jpg'] = rng.integers(0, 255, (1000, 40, 3), dtype=np.uint8)
    for name, img in files.items():
        cv2.imwrite(str(d / name), img)
    assert cv2.imread(str(d / 'rgba_45x61.png'), cv2.IMREAD_UNCHANGED).shape[2] == 4
    return {name: (str(d / name), img.shape[:2]) for name, img in files.items()}


@pytest.mark.slow
def test_detector_takes_any_image_file(tmp_path, image_files):
    """Mask R-CNN XS with the COCO test pipeline, batch 1, random weights."""
    cfg = write_config(tmp_path / 'det.py', 'configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py',
                       "model = dict(test_cfg=dict(rcnn=dict(max_per_img=5, score_thr=0.0)))\n")
    inferencer = build_inferencer(cfg)
    for name, (path, (h, w)) in image_files.items():
        pred = inferencer(path, return_datasamples=True)['predictions'][0]
        assert pred.ori_shape == (h, w), name
        inst = pred.pred_instances
        assert len(inst) == 5, name
        assert torch.isfinite(inst.bboxes).all() and tuple(inst.masks.shape[1:]) == (h, w), name


@pytest.mark.slow
def test_segmentor_takes_any_image_file(image_files):
    """Semantic FPN XS with the ADE20K test pipeline, batch 1, random weights."""
    inferencer = build_inferencer(os.path.join(REPO, 'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'))
    for name, (path, (h, w)) in image_files.items():
        pred = inferencer(path, return_datasamples=True)
        seg = pred.pred_sem_seg.data
        assert tuple(seg.shape) == (1, h, w), name
        assert 0 <= int(seg.min()) and int(seg.max()) < 150, name


def _optim_step(model, cfg, data):
    from mmengine.optim import build_optim_wrapper
    model.init_weights()
    model.train()
    before = model.backbone.stem[0].weight.detach().clone()
    log_vars = model.train_step(data, build_optim_wrapper(model, cfg.optim_wrapper))
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(before, model.backbone.stem[0].weight)


def test_detector_trains_on_a_batch_of_one_odd_sized_image():
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg = None
    data = demo_mm_inputs(batch_size=1, image_shapes=[(3, 97, 131)], num_items=[2],
                          num_classes=80, with_mask=True)
    _optim_step(MODELS.build(cfg.model), cfg, data)


def test_segmentor_trains_on_a_batch_of_one_odd_sized_image():
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from mmswift.analysis.benchmark import demo_seg_inputs
    register_all_modules()
    torch.manual_seed(0)
    cfg = Config.fromfile(os.path.join(REPO, 'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = None
    cfg.model.data_preprocessor.size_divisor = 32
    data = demo_seg_inputs([(97, 131)])
    _optim_step(revert_sync_batchnorm(MODELS.build(cfg.model)), cfg, data)
