"""The tools' options and scripts that no other test runs: train.py's --amp,
--auto-scale-lr and --full-data-check, make_gallery.py, and the Slurm and
torchrun launchers (dist_test.sh, slurm_train.sh, slurm_test.sh)."""
import glob
import os
import stat
import subprocess

import cv2
import numpy as np
import pytest
import torch

from .conftest import (REPO, free_port, load_tool, logged_scalars, own_mmengine_instances,
                       randomize_, tiny_seg_config)


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('train')


def test_amp_on_a_machine_without_cuda_exits_2(tmp_path, capsys, monkeypatch, train_tool):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    rc = train_tool.main([tiny_seg_config(tmp_path), '--amp', '--work-dir', str(tmp_path / 'w')])
    assert rc == 2
    assert '--amp needs a CUDA GPU' in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / 'w' / '*.pth'))


@pytest.mark.slow
def test_auto_scale_lr_scales_by_the_batch_against_the_configs_base(tmp_path, train_tool):
    """One process of batch 2 against auto_scale_lr.base_batch_size=16:
    the lr of every logged iteration is 2/16 of the unscaled run's."""
    config = tiny_seg_config(tmp_path, max_iters=1)
    lrs = {}
    for name, extra in (('plain', []), ('scaled', ['--auto-scale-lr'])):
        work = str(tmp_path / name)
        with own_mmengine_instances():  # each run logs into its own work dir
            assert train_tool.main([config, '--work-dir', work, *extra, '--cfg-options',
                                    'auto_scale_lr.base_batch_size=16',
                                    'train_dataloader.batch_size=2']) == 0
        lrs[name] = [r['lr'] for r in logged_scalars(work) if 'lr' in r]
    assert lrs['plain'] and len(lrs['plain']) == len(lrs['scaled'])
    for plain, scaled in zip(lrs['plain'], lrs['scaled']):
        assert scaled == pytest.approx(plain * 2 / 16, rel=1e-6)


def test_auto_scale_lr_without_a_base_batch_size_exits_2(tmp_path, capsys, train_tool):
    config = tiny_seg_config(tmp_path)
    with open(config, 'a') as f:
        f.write('\nauto_scale_lr = dict(_delete_=True, enable=False)\n')
    assert train_tool.main([config, '--auto-scale-lr', '--work-dir', str(tmp_path / 'w')]) == 2
    assert 'has no auto_scale_lr.base_batch_size' in capsys.readouterr().err


@pytest.mark.slow
def test_full_data_check_flag_reads_every_pixel(tmp_path, capsys, train_tool):
    """A JPEG cut after its header passes the default (header) check and
    stops --full-data-check before any training, naming the file."""
    config = tiny_seg_config(tmp_path)
    from mmengine.config import Config

    from mmswift.engine.datacheck import check_datasets
    check_datasets(Config.fromfile(config), ('train', ))  # generates the data
    image = sorted(glob.glob(str(tmp_path / 'scenes' / 'images' / 'training' / '*.jpg')))[1]
    data = open(image, 'rb').read()
    with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])
    work = str(tmp_path / 'w')
    assert train_tool.main([config, '--full-data-check', '--work-dir', work]) == 2
    assert f'{image}: truncated' in capsys.readouterr().err
    assert not glob.glob(os.path.join(work, '*.pth'))


def _random_checkpoint(config: str, path: str, scope: str) -> str:
    import importlib

    from mmengine.config import Config
    importlib.import_module(f'{scope}.utils').register_all_modules()
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model = randomize_(registry.build(Config.fromfile(config).model), seed=3)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


@pytest.mark.slow
def test_make_gallery_draws_every_photo_through_every_model(tmp_path):
    tool = load_tool('make_gallery')
    det = _random_checkpoint(os.path.join(REPO, tool.DET_CFG), str(tmp_path / 'det.pth'), 'mmdet')
    seg = _random_checkpoint(os.path.join(REPO, tool.SEG_CFG), str(tmp_path / 'seg.pth'), 'mmseg')
    out = str(tmp_path / 'gallery.png')
    assert tool.main(['--det-checkpoint', det, '--seg-checkpoint', seg, '--out', out,
                      '--height', '48']) == 0
    grid = cv2.imread(out)
    rows, cols = len(tool.PHOTOS), 4  # the photo, random weights, the two checkpoints
    assert grid.shape[0] % rows == 0 and grid.shape[1] % cols == 0
    panel_h, panel_w = grid.shape[0] // rows, grid.shape[1] // cols
    assert panel_h >= 48
    # the three weightings draw three different heatmaps of the first photo
    panels = [grid[:panel_h, i * panel_w:(i + 1) * panel_w].astype(int) for i in range(1, 4)]
    assert all(np.abs(a - b).mean() > 1 for i, a in enumerate(panels) for b in panels[i + 1:])


def _fake_srun(tmp_path, rc: int) -> dict:
    """An ``srun`` on PATH that records its arguments and exits ``rc``."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {tmp_path}/srun_args\n'
                    f'exit {rc}\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}')


def test_slurm_train_asks_for_the_term_signal_and_passes_exit_3_on(tmp_path):
    env = _fake_srun(tmp_path, rc=3)
    env.update(GPUS='16', GPUS_PER_NODE='8')
    proc = subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', 'CFG.py', 'WORK',
                           '--resume', '--cfg-options', 'a=1'], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 3  # preempted with a checkpoint: requeue
    args = (tmp_path / 'srun_args').read_text().split('\n')
    for expected in ('-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16',
                     '--ntasks-per-node=8', '--kill-on-bad-exit=1', '--signal=TERM@120'):
        assert expected in args, (expected, args)
    python = args.index('python')
    assert args[python:] == ['python', '-u', os.path.join(REPO, 'tools/train.py'), 'CFG.py',
                             '--work-dir=WORK', '--launcher=slurm', '--resume', '--cfg-options',
                             'a=1', '']


def test_slurm_test_runs_the_test_tool_on_every_task(tmp_path):
    env = _fake_srun(tmp_path, rc=0)
    proc = subprocess.run(['bash', 'tools/slurm_test.sh', 'part', 'job', 'CFG.py', 'CKPT.pth',
                           '--out', 'o.pkl'], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0
    args = (tmp_path / 'srun_args').read_text().split('\n')
    assert '--ntasks=8' in args and '--gres=gpu:8' in args
    python = args.index('python')
    assert args[python:] == ['python', '-u', os.path.join(REPO, 'tools/test.py'), 'CFG.py',
                             'CKPT.pth', '--launcher=slurm', '--out', 'o.pkl', '']


@pytest.mark.slow
def test_dist_test_two_processes_give_the_one_process_metrics(tmp_path):
    """tools/dist_test.sh with 2 gloo processes on CPU: each scores half the
    val images, and the collected metrics are those of one process."""
    from mmswift.apis import latest_test_metrics
    config = tiny_seg_config(tmp_path)
    from mmengine.config import Config

    from mmswift.engine.datacheck import check_datasets
    check_datasets(Config.fromfile(config), ('val', ))  # generates the data
    ckpt = _random_checkpoint(config, str(tmp_path / 'seg.pth'), 'mmseg')
    env = dict(os.environ, PORT=str(free_port()), PYTHON=__import__('sys').executable,
               OMP_NUM_THREADS='1')
    two = subprocess.run(['bash', 'tools/dist_test.sh', config, ckpt, '2', '--work-dir',
                          str(tmp_path / 'two')], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = load_tool('test').main([config, ckpt, '--work-dir', str(tmp_path / 'one')])
    assert one == 0
    m2, m1 = latest_test_metrics(str(tmp_path / 'two')), latest_test_metrics(str(tmp_path / 'one'))
    assert m2['mIoU'] == pytest.approx(m1['mIoU'], abs=0.01)
    assert m2['aAcc'] == pytest.approx(m1['aAcc'], abs=0.01)


def test_prepare_offline_asks_pip_for_every_manylinux_tag(tmp_path):
    """tools/prepare_offline.sh offers pip the manylinux_2_X_x86_64 tags wheels
    carry (a stand-in python3 on PATH records what pip would have been asked)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    fake = bin_dir / 'python3'
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls.txt"}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    proc = subprocess.run(['bash', os.path.join(REPO, 'tools', 'prepare_offline.sh'),
                           str(tmp_path / 'offline'), '3.12', 'manylinux2014_x86_64'],
                          env=dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}'),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    downloads = [line.split() for line in (tmp_path / 'calls.txt').read_text().splitlines()
                 if ' download ' in line]
    assert len(downloads) > 3  # one per requirement of requirements/offline.txt
    tags = {args[i + 1] for args in downloads for i, a in enumerate(args) if a == '--platform'}
    assert {'manylinux_2_17_x86_64', 'manylinux_2_28_x86_64', 'manylinux2014_x86_64',
            'manylinux1_x86_64'} <= tags
    assert all(t.startswith('manylinux') and t.endswith('_x86_64') and t.count('x86_64') == 1
               for t in tags), tags
