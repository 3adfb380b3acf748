"""The demo's pretraining: the classifier, its official-layout checkpoint,
the tool that writes it, every door that loads it, and fine-tuning from it."""
import glob
import json
import os
import re

import numpy as np
import pytest
import torch

from mmswift.datasets.shape_crops import CLASSES, render_crop
from mmswift.evaluation import Accuracy
from mmswift.models import SwiftFormer, SwiftFormerClassifier
from mmswift.models.pretrained import convert_state_dict, load_pretrained, to_official

from .conftest import REPO, load_tool, run_log, run_py, tiny_det_config
from .test_pretrained import _official_from_hf


def test_official_layout_is_the_official_release_layout(hf_swiftformer):
    """Same keys and shapes as the official layout derived independently from
    transformers' classifier; converting back gives the backbone unchanged."""
    torch.manual_seed(0)
    reference = _official_from_hf(hf_swiftformer('xs', classifier=True).state_dict())['model']
    num_classes = reference['head.weight'].shape[0]
    sd = SwiftFormerClassifier('xs', num_classes=num_classes).state_dict()
    ours = to_official(sd)
    # the release's one entry, and the attention form (which no official
    # key can hold) in meta, where mmswift's loader reads it
    assert list(ours) == ['model', 'meta'] and ours['meta'] == {'attn_norm': 'l2'}
    assert set(ours['model']) == set(reference)
    assert all(ours['model'][k].shape == reference[k].shape for k in reference)
    native, fmt, dropped = convert_state_dict(ours['model'])
    assert fmt == 'official'
    assert {k.split('.')[0] for k in dropped} == {'norm', 'head', 'dist_head'}
    backbone = {k[len('backbone.'):]: v for k, v in sd.items()
                if k.startswith('backbone.') and not k.startswith('backbone.norm3.')
                and not k.endswith('.attn_norm_code')}
    assert set(native) == set(backbone)
    assert all(torch.equal(native[k], backbone[k]) for k in backbone)
    # the classifier's last-stage norm is the official ``norm``
    assert torch.equal(ours['model']['norm.weight'], sd['backbone.norm3.weight'])


def test_classifier_averages_both_heads_and_learns_labels():
    torch.manual_seed(0)
    model = SwiftFormerClassifier('xs', num_classes=6)
    x = torch.randn(4, 3, 64, 48)
    model.eval()
    with torch.no_grad():
        pooled = model.backbone(x)[-1].mean((2, 3))
        expected = (model.head(pooled) + model.dist_head(pooled)) / 2
        torch.testing.assert_close(model(x), expected)
        preds = model(x, [0, 1, 2, 3], mode='predict')
    assert [p['gt_label'] for p in preds] == [0, 1, 2, 3]
    assert [p['pred_label'] for p in preds] == expected.argmax(1).tolist()
    model.train()
    loss = model(x, [0, 1, 2, 3], mode='loss')['loss_cls']
    loss.backward()  # both heads learn the labels
    assert model.head.weight.grad.abs().sum() > 0 and model.dist_head.weight.grad.abs().sum() > 0


def test_accuracy_metric_counts_correct_predictions():
    metric = Accuracy()
    metric.process({}, [dict(pred_label=1, gt_label=1), dict(pred_label=2, gt_label=0),
                        dict(pred_label=0, gt_label=0), dict(pred_label=5, gt_label=4)])
    assert metric.compute_metrics(metric.results) == dict(top1=50.0)


def test_crops_are_seeded_labelled_and_cover_every_class():
    a, label = render_crop(7, size=40)
    b, again = render_crop(7, size=40)
    assert a.shape == (40, 40, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and label == again
    assert not np.array_equal(a, render_crop(8, size=40)[0])
    labels = {render_crop(i)[1] for i in range(60)}
    assert labels == set(range(len(CLASSES)))


def _tiny_pretrain_options(root: str, extra=()):
    """--cfg-options for a 3-iteration pretraining on 48 crops of 32x32 in ``root``."""
    opts = ['train_cfg.max_iters=3', 'train_cfg.val_interval=3',
            'default_hooks.checkpoint.interval=3', 'default_hooks.logger.interval=1']
    for loader in ('train_dataloader', 'val_dataloader'):
        opts += [f'{loader}.batch_size=16', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False', f'{loader}.dataset.data_root={root}',
                 f'{loader}.dataset.generate.num_train=48',
                 f'{loader}.dataset.generate.num_val=12',
                 f'{loader}.dataset.generate.size=32', f'{loader}.dataset.generate.seed=2']
    return opts + list(extra)


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """tools/pretrain_demo.py on a tiny crop set: (run, checkpoint, folder)."""
    tmp = tmp_path_factory.mktemp('pretrain')
    out = str(tmp / 'xs_demo.pth')
    run = run_py('tools/pretrain_demo.py', '--out', out, '--work-dir', str(tmp / 'work'),
                 '--cfg-options', *_tiny_pretrain_options(str(tmp / 'crops') + '/'))
    return run, out, tmp


@pytest.mark.slow
def test_pretrain_tool_writes_the_official_layout_and_reuses_it(pretrained):
    run, out, tmp = pretrained
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = torch.load(out)
    # the release's one entry, and the attention form in meta (no official key holds it)
    assert list(ckpt) == ['model', 'meta'] and ckpt['meta'] == {'attn_norm': 'l2'}
    prefixes = {re.sub(r'\..*', '', k) for k in ckpt['model']}
    assert prefixes == {'patch_embed', 'network', 'norm', 'head', 'dist_head'}
    assert ckpt['model']['head.weight'].shape == (len(CLASSES), 220)
    meta = json.load(open(out + '.json'))
    # a top-1 accuracy over the 12 val crops: a multiple of 100/12
    correct = meta['val_top1'] * 12 / 100
    assert correct == pytest.approx(round(correct), abs=1e-4) and meta['train_seconds'] > 0
    # same config and overrides: reused, said so, file untouched
    mtime = os.path.getmtime(out)
    again = run_py('tools/pretrain_demo.py', '--out', out, '--work-dir', str(tmp / 'work2'),
                   '--cfg-options', *_tiny_pretrain_options(str(tmp / 'crops') + '/'))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'reusing {out}' in again.stdout
    assert os.path.getmtime(out) == mtime and not os.path.exists(tmp / 'work2')
    # another generator seed is another pretraining: not reused
    other = load_tool('pretrain_demo')
    opts = _tiny_pretrain_options(str(tmp / 'crops') + '/')
    assert other.fingerprint(other.CONFIG, opts) != other.fingerprint(
        other.CONFIG, [o.replace('seed=2', 'seed=3') for o in opts])


@pytest.mark.slow
def test_every_door_of_the_official_release_loads_it(pretrained, tmp_path):
    _, out, _ = pretrained
    weights = convert_state_dict(torch.load(out)['model'])[0]
    # init_cfg, as the demo detector's backbone loads it
    model = SwiftFormer('xs', init_cfg=dict(type='Pretrained', checkpoint=out))
    model.init_weights()
    own = model.state_dict()
    # all but the new output norms and the attention-form buffers (in meta there)
    assert set(weights) == {k for k in own if not k.startswith('norm')
                            and not k.endswith('.attn_norm_code')}
    assert all(torch.equal(own[k], v) for k, v in weights.items())
    # tools/convert_checkpoint.py
    dst = str(tmp_path / 'converted.pth')
    assert load_tool('convert_checkpoint').main([out, dst, '--arch', 'xs']) == 0
    converted = torch.load(dst)['state_dict']
    assert all(torch.equal(converted[k], v) for k, v in weights.items())
    # tools/visualize_features.py with the checkpoint
    image = os.path.join(REPO, 'docs/figures/gallery_stage1.png')
    assert load_tool('visualize_features').main(
        [image, 'xs', out, '--out-dir', str(tmp_path / 'vis')]) == 0
    assert glob.glob(str(tmp_path / 'vis' / '*.png'))


@pytest.mark.slow
def test_fine_tuning_starts_from_the_pretrained_weights(pretrained, tmp_path):
    """One epoch of the demo detector at lr 0: the backbone it saves is the
    pretrained one, loaded through init_cfg, and the log says how much."""
    _, out, _ = pretrained
    cfg = tiny_det_config(tmp_path)
    work = str(tmp_path / 'work')
    assert load_tool('train').main([
        cfg, '--work-dir', work, '--cfg-options', f'model.backbone.init_cfg.checkpoint={out}',
        'optim_wrapper.optimizer.lr=0.0', 'optim_wrapper.optimizer.weight_decay=0.0']) == 0
    weights = convert_state_dict(torch.load(out)['model'])[0]
    own = SwiftFormer('xs').state_dict()
    log = run_log(work)
    assert (f'SwiftFormer: loaded {len(weights)}/{len(own)} tensors from {out} '
            f'(official format), every backbone tensor it holds') in log
    saved = torch.load(os.path.join(work, 'epoch_1.pth'))['state_dict']
    learned = [k for k in weights if 'running_' not in k and 'num_batches' not in k]
    assert all(torch.equal(saved[f'backbone.{k}'], weights[k]) for k in learned)
    fresh = SwiftFormer('xs')
    fresh.init_weights()
    assert not torch.equal(fresh.state_dict()['stem.0.weight'], saved['backbone.stem.0.weight'])


def test_missing_demo_checkpoint_names_the_tool_that_writes_it(tmp_path):
    from mmengine.config import Config

    from mmswift.errors import CheckpointNotFoundError
    cfg = Config.fromfile(os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'))
    missing = str(tmp_path / os.path.basename(cfg.model.backbone.init_cfg.checkpoint))
    model = SwiftFormer('xs', init_cfg=dict(type='Pretrained', checkpoint=missing))
    with pytest.raises(CheckpointNotFoundError, match=r'python tools/pretrain_demo\.py writes'):
        model.init_weights()
