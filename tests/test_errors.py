"""Bad input gets one actionable line and a non-zero exit status, before
any training; a diverging run stops naming the iteration and the last good
checkpoint; checkpoints load under weights_only and say what they need."""
import json
import os

import pytest
import torch
from PIL import Image

from mmswift.datasets.scenes_ade import generate_scenes_ade
from mmswift.datasets.shapes_coco import ensure_shapes_coco

from .conftest import REPO, demo_config, load_tool, run_py, write_config

DET = 'configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py'
SEG = 'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'


def _run_tool(name, argv, capsys):
    """tools/NAME.py in this process: (exit status, its last stderr line)."""
    rc = load_tool(name).main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, (err[-1] if err else '')


def _train(argv, capsys):
    return _run_tool('train', argv, capsys)


def _test(argv, capsys):
    return _run_tool('test', argv, capsys)


# ------------------------------------------------------------- configs
@pytest.mark.slow
def test_missing_config_exits_2_with_the_path(tmp_path):
    proc = run_py('tools/train.py', 'configs/det/no-such-config.py')
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: config file not found: configs/det/no-such-config.py')


def test_a_config_of_neither_mmdet_nor_mmseg_is_named_with_the_fix(tmp_path):
    """The det/seg switch (``mmswift.task.task_of``) refuses any other scope
    in one line naming the config and what to do."""
    from mmengine.config import Config

    from mmswift.errors import ConfigError
    from mmswift.task import task_of
    assert task_of(Config.fromfile(os.path.join(REPO, DET))) == 'det'
    assert task_of(Config.fromfile(os.path.join(REPO, SEG))) == 'seg'
    path = tmp_path / 'cls.py'
    path.write_text("default_scope = 'mmpretrain'\n")
    with pytest.raises(ConfigError) as e:
        task_of(Config.fromfile(str(path)))
    line = str(e.value)
    assert '\n' not in line and str(path) in line and "default_scope='mmpretrain'" in line
    assert "set default_scope = 'mmdet' or 'mmseg'" in line


def test_unknown_variant_lists_the_valid_ones(tmp_path, capsys):
    rc, line = _train([DET, '--work-dir', str(tmp_path), '--skip-data-check',
                       '--cfg-options', 'model.backbone.arch=xxl'], capsys)
    assert rc == 2
    assert "unknown arch 'xxl'" in line and 'xs, s, l1, l3' in line
    assert 'model.backbone.arch' in line


# --------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def xs_seg_checkpoint(tmp_path_factory):
    """A whole-model Semantic FPN XS checkpoint as mmengine saves it."""
    from mmswift.apis import init_model
    path = str(tmp_path_factory.mktemp('ckpt') / 'fpn_xs.pth')
    model = init_model(os.path.join(REPO, SEG))
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, path)
    return path


def test_checkpoint_missing_truncated_or_foreign(tmp_path, capsys, xs_seg_checkpoint):
    rc, line = _test([SEG, str(tmp_path / 'nope.pth')], capsys)
    assert rc == 2 and 'checkpoint not found' in line and 'nope.pth' in line

    cut = tmp_path / 'cut.pth'
    data = open(xs_seg_checkpoint, 'rb').read()
    cut.write_bytes(data[:len(data) // 3])
    rc, line = _test([SEG, str(cut)], capsys)
    assert rc == 2 and 'cut.pth is truncated' in line

    notes = tmp_path / 'notes.pth'
    notes.write_text('not a checkpoint')
    rc, line = _test([SEG, str(notes)], capsys)
    assert rc == 2 and 'notes.pth' in line and 'not a checkpoint' in line


def test_checkpoint_of_another_variant_is_refused(tmp_path, capsys, xs_seg_checkpoint):
    l1 = SEG.replace('-xs_', '-l1_')
    rc, line = _test([l1, xs_seg_checkpoint], capsys)
    assert rc == 2
    assert 'SwiftFormer-XS' in line and "arch='l1'" in line


@pytest.mark.slow
def test_unsafe_checkpoint_names_the_type_and_how_to_allow_it(tmp_path, capsys,
                                                              xs_seg_checkpoint):
    import argparse
    ckpt = torch.load(xs_seg_checkpoint)
    ckpt['meta']['args'] = argparse.Namespace(lr=0.1)  # as old tools saved
    path = str(tmp_path / 'with_namespace.pth')
    torch.save(ckpt, path)
    root = str(tmp_path / 'scenes')
    generate_scenes_ade(root, num_train=1, num_val=1, size=64, seed=3)
    argv = [SEG, path, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
            f'test_dataloader.dataset.data_root={root}']
    proc = run_py('tools/test.py', *argv)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2
    assert 'with_namespace.pth contains argparse.Namespace' in line
    assert 'MMSWIFT_SAFE_GLOBALS=argparse.Namespace' in line

    trusted = run_py('tools/test.py', *argv,
                     env={'MMSWIFT_SAFE_GLOBALS': 'argparse.Namespace'})
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert 'mIoU' in trusted.stdout


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, capsys,
                                                               xs_seg_checkpoint):
    marker = tmp_path / 'pwned'
    ckpt = torch.load(xs_seg_checkpoint)
    ckpt['meta']['payload'] = _RunsCode(marker)
    path = str(tmp_path / 'evil.pth')
    torch.save(ckpt, path)
    rc, line = _test([SEG, path, '--skip-data-check'], capsys)
    assert rc == 2 and 'evil.pth contains posix.system' in line and 'never unpickles' in line
    assert 'MMSWIFT_SAFE_GLOBALS' not in line  # nothing to allow: torch blocks os for good
    assert not marker.exists()


# ------------------------------------------------------------ datasets
def test_dataset_root_missing_or_empty_names_path_and_layout(tmp_path, capsys):
    missing = str(tmp_path / 'coco') + '/'
    rc, line = _train([DET, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                       f'train_dataloader.dataset.data_root={missing}'], capsys)
    assert rc == 2
    assert f'dataset root {missing} ' in line and 'does not exist' in line
    assert 'annotations/instances_train2017.json' in line and 'train2017/' in line

    empty = tmp_path / 'ade'
    empty.mkdir()
    rc, line = _train([SEG, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                       f'train_dataloader.dataset.data_root={empty}'], capsys)
    assert rc == 2 and f'dataset root {empty} ' in line and 'is empty' in line
    assert 'images/training/' in line and 'annotations/training/' in line


@pytest.mark.parametrize('content, expected', [
    ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "he',
     'is not valid JSON (line 1, column'),
    ('{"images": [], "categories": []}', 'no "annotations" list'),
    ('[1, 2, 3]', 'top level is a list'),
])
def test_annotation_file_that_is_not_coco(tmp_path, capsys, content, expected):
    root = tmp_path / 'coco'
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_train2017.json').write_text(content)
    rc, line = _train([DET, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                       f'train_dataloader.dataset.data_root={root}/'], capsys)
    assert rc == 2 and 'instances_train2017.json' in line and expected in line


def _shapes_config(tmp_path, root):
    return write_config(tmp_path / 'det.py', 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py', f'''
gen = dict(num_train=6, num_val=2, size=64, seed=3)
train_dataloader = dict(num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={root!r}, generate=gen))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={root!r}, generate=gen))
val_evaluator = dict(ann_file={root!r} + 'annotations/instances_val.json')
''')


def test_missing_and_unreadable_images_stop_before_training(tmp_path, capsys):
    root = str(tmp_path / 'shapes') + '/'
    ensure_shapes_coco(root, num_train=6, num_val=2, size=64, seed=3)  # as the config
    ann = json.load(open(os.path.join(root, 'annotations', 'instances_train.json')))
    names = [im['file_name'] for im in ann['images']]
    train_dir = os.path.join(root, 'train')
    os.remove(os.path.join(train_dir, names[1]))
    with open(os.path.join(train_dir, names[4]), 'wb') as f:
        f.write(b'\x00garbage, not a JPEG')
    work = str(tmp_path / 'work')
    rc, line = _train([_shapes_config(tmp_path, root), '--work-dir', work], capsys)
    assert rc == 2
    assert '2 of ' in line and 'missing or unreadable' in line
    assert f'{names[1]}: missing' in line and f'{names[4]}: not a readable image' in line
    listing = open(os.path.join(work, 'bad_files_train.txt')).read().splitlines()
    assert len(listing) == 2
    assert not [f for f in os.listdir(work) if f.endswith('.pth')]  # nothing trained


def test_label_png_of_another_size_is_named(tmp_path, capsys):
    root = str(tmp_path / 'scenes')
    generate_scenes_ade(root, num_train=4, num_val=2, size=64, seed=3)
    label_dir = os.path.join(root, 'annotations', 'training')
    name = sorted(os.listdir(label_dir))[2]
    label = Image.open(os.path.join(label_dir, name))
    label.resize((48, 64), Image.NEAREST).save(os.path.join(label_dir, name))
    cfg = write_config(tmp_path / 'seg.py', SEG, f'''
train_dataloader = dict(dataset=dict(data_root={root!r}))
val_dataloader = dict(dataset=dict(data_root={root!r}))
''')
    rc, line = _train([cfg, '--work-dir', str(tmp_path / 'w')], capsys)
    assert rc == 2
    assert f'{name}: label is 48x64 but its image' in line and 'is 64x64' in line


# ---------------------------------------------------- diverging training
def _poisoned_seg_config(tmp_path, at, when):
    return demo_config(tmp_path, 'seg', dict(num_train=4, num_val=1, size=64, seed=1), f'''
custom_imports = dict(imports=['mmswift', 'tests.fault_injection'], allow_failed_imports=False)
train_cfg = dict(max_iters=8, val_interval=8)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3), logger=dict(interval=1))
custom_hooks = _base_.robust_training_hooks + [
    dict(type='PoisonWeightsHook', at={at}, when={when!r})]
''')


@pytest.mark.slow
def test_nan_loss_stops_with_the_iteration_and_last_good_checkpoint(tmp_path):
    work = str(tmp_path / 'work')
    proc = run_py('tools/train.py', _poisoned_seg_config(tmp_path, 5, 'before'),
                  '--work-dir', work)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert line.startswith('error: loss became nan at iteration 5;')
    assert f'last good checkpoint: {os.path.join(work, "iter_4.pth")}' in line
    assert 'optim_wrapper.clip_grad' in line and '--resume' in line
    assert not os.path.exists(os.path.join(work, 'iter_6.pth'))


@pytest.mark.slow
def test_non_finite_weights_are_never_saved(tmp_path, capsys):
    work = str(tmp_path / 'work')
    rc, line = _train([_poisoned_seg_config(tmp_path, 4, 'after'), '--work-dir', work],
                      capsys)
    assert rc == 1
    assert line.startswith('error: weights became non-finite at iteration 4')
    assert f'last good checkpoint: {os.path.join(work, "iter_2.pth")}' in line
    assert not os.path.exists(os.path.join(work, 'iter_4.pth'))
    assert open(os.path.join(work, 'last_checkpoint')).read().endswith('iter_2.pth')
