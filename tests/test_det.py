"""Mask R-CNN configs, a training step per variant, and the tools end to end."""
import glob
import os

import cv2
import pytest
import torch
from mmengine.config import Config

from mmswift.apis import DEPLOY_MESSAGE, latest_test_metrics
from mmswift.models import SwiftFormer

from .conftest import PYTHON, REPO, free_port, load_tool, run_log, run_py, tiny_det_config

VARIANTS = sorted(SwiftFormer.arch_settings)


def own_boxes_as_annotations(pkl: str, ann_file: str, out: str, per_image: int) -> str:
    """``ann_file`` with its annotations replaced by the ``per_image`` best
    boxes of the dumped predictions (as boxes and rectangle polygons)."""
    import json
    import pickle
    with open(pkl, 'rb') as f:
        preds = pickle.load(f)
    with open(ann_file) as f:
        coco = json.load(f)
    cat_ids = [c['id'] for c in coco['categories']]
    coco['annotations'] = []
    for p in preds:
        inst = p['pred_instances']
        for i in inst['scores'].argsort(descending=True)[:per_image].tolist():
            x1, y1, x2, y2 = inst['bboxes'][i].tolist()
            coco['annotations'].append(dict(
                id=len(coco['annotations']) + 1, image_id=p['img_id'], iscrowd=0,
                category_id=cat_ids[int(inst['labels'][i])], bbox=[x1, y1, x2 - x1, y2 - y1],
                area=(x2 - x1) * (y2 - y1), segmentation=[[x1, y1, x2, y1, x2, y2, x1, y2]]))
    assert coco['annotations'], 'no box predicted at all'
    with open(out, 'w') as f:
        json.dump(coco, f)
    return out


def cocoeval_of_dumped_boxes(pkl: str, ann_file: str) -> list:
    """pycocotools' 12 box statistics of the predictions that mmdet's
    ``DumpDetResults`` wrote (labels index the annotation file's categories)."""
    import contextlib
    import io
    import pickle

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with open(pkl, 'rb') as f:
        preds = pickle.load(f)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    assert sorted(p['img_id'] for p in preds) == sorted(gt.getImgIds())
    cat_ids = [c['id'] for c in gt.dataset['categories']]
    dets = []
    for p in preds:
        inst = p['pred_instances']
        for (x1, y1, x2, y2), score, label in zip(inst['bboxes'].tolist(), inst['scores'].tolist(),
                                                  inst['labels'].tolist()):
            dets.append(dict(image_id=p['img_id'], category_id=cat_ids[label],
                             bbox=[x1, y1, x2 - x1, y2 - y1], score=score))
    assert dets, 'no box predicted at all'
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), 'bbox')
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def coco_config(variant: str) -> Config:
    return Config.fromfile(
        os.path.join(REPO, f'configs/det/mask-rcnn_swiftformer-{variant}_fpn_1x_coco.py'))


@pytest.mark.parametrize('variant', VARIANTS)
def test_coco_config_is_the_papers_recipe_and_builds(variant):
    from mmcv.transforms import Compose
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = coco_config(variant)
    bb = cfg.model.backbone
    assert bb.type == 'mmswift.SwiftFormer' and bb.arch == variant
    assert bb.init_cfg.checkpoint == f'checkpoints/swiftformer_{variant}.pth'
    assert cfg.model.neck.in_channels == SwiftFormer.arch_settings[variant]['embed_dims']
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end, warmup.by_epoch) == ('LinearLR', 500, False)
    assert (steps.type, steps.milestones) == ('MultiStepLR', [8, 11])
    assert cfg.train_cfg.max_epochs == 12
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.ann_file == 'annotations/instances_train2017.json'
    assert cfg.data_root == 'data/coco/'
    pipe = {t.type: t for t in cfg.train_pipeline}
    assert pipe['Resize'].scale == (1333, 800) and pipe['RandomFlip'].prob == 0.5
    assert 'mmswift' in cfg.custom_imports.imports

    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert model.backbone.embed_dims == SwiftFormer.arch_settings[variant]['embed_dims']
    Compose(cfg.train_pipeline)
    Compose(cfg.test_pipeline)


def test_amp_variant_only_changes_the_optim_wrapper():
    amp = Config.fromfile(os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-l1_fpn_amp-1x_coco.py'))
    fp32 = coco_config('l1')
    assert amp.optim_wrapper.type == 'AmpOptimWrapper'
    assert amp.optim_wrapper.optimizer == fp32.optim_wrapper.optimizer
    assert amp.model == fp32.model


# 4 s a step on CPU: XS (the demo's) in the quick loop, every variant in the full run
@pytest.mark.parametrize('variant', [v if v == 'xs' else pytest.param(v, marks=pytest.mark.slow)
                                     for v in VARIANTS])
def test_one_training_step_per_variant(variant):
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.optim import build_optim_wrapper
    register_all_modules()
    torch.manual_seed(0)
    cfg = coco_config(variant)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    data = demo_mm_inputs(batch_size=2, image_shapes=[(3, 128, 160), (3, 128, 128)],
                          num_items=[3, 2], num_classes=80, with_mask=True)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.stem[0].weight.detach().clone()
    log_vars = model.train_step(data, optim)
    assert torch.isfinite(log_vars['loss'])
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in log_vars and torch.isfinite(log_vars[key])
    assert not torch.equal(before, model.backbone.stem[0].weight)


@pytest.mark.slow
def test_train_tool_then_test_tool_on_generated_data(tmp_path):
    cfg = tiny_det_config(tmp_path)
    work = str(tmp_path / 'work')
    train = run_py('tools/train.py', cfg, '--work-dir', work)
    assert train.returncode == 0, train.stderr[-3000:]
    # the FeatureMapVisHook drew stage one after every iteration
    drawn = glob.glob(os.path.join(work, '*', 'vis_data', 'vis_image', 'stage1_featmap_*.png'))
    assert len(drawn) == 2
    ckpt = os.path.join(work, 'epoch_1.pth')
    assert os.path.isfile(ckpt)
    assert os.path.isfile(str(tmp_path / 'shapes' / 'annotations' / 'instances_train.json'))
    out = str(tmp_path / 'preds.pkl')
    # in-process: the exit status and the log are what matter here
    assert load_tool('test').main([cfg, ckpt, '--work-dir', str(tmp_path / 'test'),
                                   '--out', out, '--show-dir', 'vis']) == 0
    assert DEPLOY_MESSAGE in run_log(str(tmp_path / 'test'))  # the deploy form by default
    metrics = latest_test_metrics(str(tmp_path / 'test'))
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'):
        assert key in metrics
    # The reported box mAP is that of the predictions --out dumped, scored by
    # pycocotools. After one epoch the mAP against the shapes is 0, which any
    # scoring reports; so score against annotations made of the model's own
    # three best boxes per image, where the mAP is far from 0 and from 1.
    ann_file = str(tmp_path / 'shapes' / 'annotations' / 'instances_val.json')
    own = own_boxes_as_annotations(out, ann_file, str(tmp_path / 'own_boxes.json'), per_image=3)
    assert load_tool('test').main([cfg, ckpt, '--work-dir', str(tmp_path / 'own'),
                                   '--out', str(tmp_path / 'own.pkl'), '--cfg-options',
                                   f'test_evaluator.ann_file={own}',
                                   f'test_dataloader.dataset.ann_file={own}']) == 0
    own_metrics = latest_test_metrics(str(tmp_path / 'own'))
    stats = cocoeval_of_dumped_boxes(str(tmp_path / 'own.pkl'), own)
    assert 0.05 < stats[1] < 0.999
    assert own_metrics['coco/bbox_mAP'] == pytest.approx(stats[0], abs=5e-4)
    assert own_metrics['coco/bbox_mAP_50'] == pytest.approx(stats[1], abs=5e-4)
    drawn = glob.glob(str(tmp_path / 'test' / '*' / 'vis' / '*.png'))
    assert len(drawn) == 4
    # mmdet's DetInferencer with this config and the trained checkpoint
    image = str(tmp_path / 'shapes' / 'val' / '000001.png')
    demo = run_py('tools/image_demo.py', image, cfg, ckpt, '--out-dir', str(tmp_path / 'demo'),
                  '--score-thr', '0')
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert DEPLOY_MESSAGE in demo.stdout + demo.stderr
    out_png = cv2.imread(str(tmp_path / 'demo' / 'vis' / '000001.png'))
    assert out_png is not None and out_png.shape == (128, 128, 3)



@pytest.mark.slow
def test_dist_train_two_processes_on_cpu_gloo(tmp_path):
    import subprocess
    cfg = tiny_det_config(tmp_path)
    work = str(tmp_path / 'work')
    env = dict(os.environ, PYTHON=PYTHON, PORT=str(free_port()), PYTHONPATH=REPO,
               OMP_NUM_THREADS='1')
    proc = subprocess.run(['bash', 'tools/dist_train.sh', cfg, '2', '--work-dir', work],
                          cwd=REPO, env=env, text=True, capture_output=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert 'Distributed training: True' in log
    ckpt = torch.load(os.path.join(work, 'epoch_1.pth'))
    # 8 images, 4 per process, 2 processes: one iteration per epoch
    assert ckpt['meta']['iter'] == 1 and ckpt['meta']['epoch'] == 1
