"""Semantic FPN configs, a training step per variant, the tools end to end,
and the AlignResize test pipeline."""
import glob
import os

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmswift.apis import DEPLOY_MESSAGE, latest_test_metrics
from mmswift.engine.launch import adapt_to_device
from mmswift.models import SwiftFormer

from .conftest import REPO, load_tool, randomize_, run_log, run_py, tiny_seg_config

VARIANTS = sorted(SwiftFormer.arch_settings)


def build_segmentor(config: str) -> torch.nn.Module:
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    return MODELS.build(Config.fromfile(config).model)


def miou_of_label_pngs(pred_dir, ann_dir) -> float:
    """mIoU (percent) of predicted label PNGs against ADE20K-style
    annotations (0 = "other", ignored; classes 1..N), pooled over the
    images; classes absent from both are left out."""
    inter, union = {}, {}
    for ann_path in sorted(glob.glob(os.path.join(str(ann_dir), '*.png'))):
        gt = cv2.imread(ann_path, cv2.IMREAD_UNCHANGED).astype(np.int64)
        pred = cv2.imread(os.path.join(str(pred_dir), os.path.basename(ann_path)),
                          cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert pred.shape == gt.shape
        valid = gt != 0
        for c in set(np.unique(gt[valid])) | set(np.unique(pred[valid])):
            inter[c] = inter.get(c, 0) + int(((gt == c) & (pred == c) & valid).sum())
            union[c] = union.get(c, 0) + int((((gt == c) | (pred == c)) & valid).sum())
    assert union, f'no annotations in {ann_dir}'
    return 100.0 * float(np.mean([inter[c] / union[c] for c in union]))


def ade_config(variant: str) -> Config:
    return Config.fromfile(
        os.path.join(REPO, f'configs/seg/fpn_swiftformer-{variant}_8xb4-40k_ade20k-512x512.py'))


@pytest.mark.parametrize('variant', VARIANTS)
def test_ade20k_config_is_the_papers_recipe_and_builds(variant):
    from mmcv.transforms import Compose
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = ade_config(variant)
    m = cfg.model
    assert m.backbone.type == 'mmswift.SwiftFormer' and m.backbone.arch == variant
    assert m.backbone.init_cfg.checkpoint == f'checkpoints/swiftformer_{variant}.pth'
    assert m.pretrained is None
    assert m.neck.in_channels == SwiftFormer.arch_settings[variant]['embed_dims'] and m.neck.out_channels == 256
    assert m.decode_head.channels == 128 and m.decode_head.num_classes == 150
    assert m.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
    (poly, ) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ('PolyLR', 0.9, 0.0, 40000)
    assert cfg.train_cfg.max_iters == 40000 and cfg.train_cfg.val_interval == 4000
    assert cfg.default_hooks.checkpoint.interval == 4000
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.data_root == 'data/ade/ADEChallengeData2016'
    train = {t.type: t for t in cfg.train_pipeline}
    assert train['RandomResize'].scale == (2048, 512)
    assert train['RandomResize'].ratio_range == (0.5, 2.0)
    assert train['RandomCrop'].crop_size == (512, 512) and train['RandomCrop'].cat_max_ratio == 0.75
    assert 'RandomFlip' in train and 'PhotoMetricDistortion' in train
    test_types = [t.type for t in cfg.test_dataloader.dataset.pipeline]
    assert test_types[1:3] == ['Resize', 'ResizeToMultiple']

    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    assert model.backbone.embed_dims == SwiftFormer.arch_settings[variant]['embed_dims']
    Compose(cfg.train_pipeline)
    Compose(cfg.test_dataloader.dataset.pipeline)


# XS (the demo's) in the quick loop, every variant in the full run
@pytest.mark.parametrize('variant', [v if v == 'xs' else pytest.param(v, marks=pytest.mark.slow)
                                     for v in VARIANTS])
def test_one_training_step_per_variant(variant):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from mmswift.analysis.benchmark import demo_seg_inputs
    register_all_modules()
    torch.manual_seed(0)
    cfg = ade_config(variant)
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor.size = (96, 96)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # one CPU process
    model.init_weights()
    model.train()
    data = demo_seg_inputs([(96, 96), (96, 96)])
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.stem[0].weight.detach().clone()
    log_vars = model.train_step(data, optim)
    assert torch.isfinite(log_vars['loss']) and log_vars['loss'] > 0
    assert not torch.equal(before, model.backbone.stem[0].weight)


@pytest.mark.parametrize('h,w', [(333, 517), (511, 700), (97, 1501)])
def test_test_pipeline_resizes_odd_images_to_multiples_of_32(tmp_path, h, w):
    from mmcv.transforms import Compose
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = ade_config('l1')
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / 'a.jpg'), img)
    cv2.imwrite(str(tmp_path / 'a.png'), np.ones((h, w), np.uint8))
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    out = pipeline(dict(img_path=str(tmp_path / 'a.jpg'), seg_map_path=str(tmp_path / 'a.png'),
                        reduce_zero_label=True, seg_fields=[]))
    rh, rw = out['inputs'].shape[-2:]
    assert rh % 32 == 0 and rw % 32 == 0
    # keep-ratio resize into (2048, 512), then each side up to the next multiple of 32
    scale = min(2048 / max(h, w), 512 / min(h, w))
    assert rh == int(np.ceil(int(h * scale + 0.5) / 32)) * 32
    assert rw == int(np.ceil(int(w * scale + 0.5) / 32)) * 32
    assert out['data_samples'].ori_shape == (h, w)


@pytest.mark.slow
def test_train_tool_then_test_tool_on_generated_data(tmp_path):
    cfg = tiny_seg_config(tmp_path)
    work = str(tmp_path / 'work')
    train = run_py('tools/train.py', cfg, '--work-dir', work)
    assert train.returncode == 0, train.stderr[-3000:]
    # the FeatureMapVisHook drew stage one after every iteration
    drawn = glob.glob(os.path.join(work, '*', 'vis_data', 'vis_image', 'stage1_featmap_*.png'))
    assert len(drawn) == 2
    log = train.stdout + train.stderr
    # one CPU process: mmengine reverts the head's SyncBN to BN, and says so
    assert 'SyncBatchNorm (SyncBN) layers in the model will be automatically reverted' in log
    ckpt = os.path.join(work, 'iter_2.pth')
    assert os.path.isfile(ckpt)
    assert os.path.isdir(str(tmp_path / 'scenes' / 'annotations' / 'validation'))
    # tested on the trained weights made to predict many classes (after two
    # iterations every pixel gets nearly the same class, which any form gets right)
    varied = str(tmp_path / 'varied.pth')
    checkpoint = torch.load(ckpt, map_location='cpu', weights_only=False)
    model = build_segmentor(cfg)
    model.load_state_dict(checkpoint['state_dict'])
    randomize_(model).eval()
    with torch.no_grad():  # centre each class's logit so that the features decide
        logits = model.decode_head(model.extract_feat(torch.randn(1, 3, 512, 512)))
        model.decode_head.conv_seg.bias.sub_(logits.mean(dim=(0, 2, 3)))
    torch.save(dict(state_dict=model.state_dict(), meta=checkpoint['meta']), varied)
    # the deploy form by default, said in the log; --no-deploy tests the training form
    labels = {}
    for form, extra in (('deploy', ['--show-dir', str(tmp_path / 'vis')]),
                        ('plain', ['--no-deploy'])):
        # in-process: the exit status and the log are what matter here
        assert load_tool('test').main([cfg, varied, '--work-dir', str(tmp_path / f'test_{form}'),
                                       '--out', str(tmp_path / f'pred_{form}'), *extra]) == 0
        assert (DEPLOY_MESSAGE in run_log(str(tmp_path / f'test_{form}'))) == (form == 'deploy')
        # the reported mIoU is that of the label PNGs --out wrote, scored here
        # against the annotations by the definition (ADE20K's reduce_zero_label)
        metrics = latest_test_metrics(str(tmp_path / f'test_{form}'))
        assert metrics['mIoU'] == pytest.approx(miou_of_label_pngs(
            tmp_path / f'pred_{form}', tmp_path / 'scenes' / 'annotations' / 'validation'),
            abs=0.01)
        pngs = sorted(glob.glob(str(tmp_path / f'pred_{form}' / '*.png')))
        assert len(pngs) == 3
        labels[form] = np.stack([cv2.imread(f, cv2.IMREAD_UNCHANGED) for f in pngs])
    assert len(np.unique(labels['plain'])) >= 3
    assert (labels['deploy'] == labels['plain']).mean() >= 0.999
    assert len(glob.glob(str(tmp_path / 'vis' / '**' / '*.png'), recursive=True)) == 3
    # mmseg's MMSegInferencer with this config and the trained checkpoint: a coloured overlay
    image = str(tmp_path / 'scenes' / 'images' / 'validation' / '000000.jpg')
    demo = run_py('tools/image_demo.py', image, cfg, ckpt, '--out-dir', str(tmp_path / 'demo'))
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert DEPLOY_MESSAGE in demo.stdout + demo.stderr
    drawn = glob.glob(str(tmp_path / 'demo' / 'vis' / '*'))
    assert len(drawn) == 1
    overlay, original = cv2.imread(drawn[0]), cv2.imread(image)
    assert overlay.shape == original.shape and not np.array_equal(overlay, original)


def test_syncbn_stays_for_distributed_gpu_runs(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = ade_config('xs')
    assert adapt_to_device(cfg, 'pytorch') == 0
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.get('model_wrapper_cfg') is None
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'


def test_syncbn_becomes_bn_for_distributed_cpu_runs(monkeypatch):
    import io
    import logging

    from mmengine.logging import MMLogger

    cfg = ade_config('xs')
    assert adapt_to_device(cfg, 'none') == 0
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'  # one process: mmengine reverts
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # on a GPU machine too
    logger = MMLogger.get_instance('test_syncbn')
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        assert adapt_to_device(cfg, 'pytorch') == 1
    finally:
        logger.removeHandler(handler)
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert 'SyncBN has no CPU implementation' in stream.getvalue()
