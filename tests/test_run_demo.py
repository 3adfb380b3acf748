"""tools/run_demo.py, the main jobs: pretrain -> fine-tune -> test, timed
step by step, with the pretraining reused when its config is unchanged and
skipped with --from-scratch (on a tiny det demo)."""
import json
import os
import re

import pytest
import torch

from .conftest import load_tool, tiny_det_config
from .test_pretrain_demo import _tiny_pretrain_options


@pytest.fixture
def tiny_demo(tmp_path, monkeypatch):
    """run_demo's det entry pointed at the tiny det config and a tiny pretraining."""
    tool = load_tool('run_demo')
    out = str(tmp_path / 'pretrained.pth')
    pretrain = ['--out', out, '--work-dir', str(tmp_path / 'pretrain'), '--cfg-options',
                *_tiny_pretrain_options(str(tmp_path / 'crops') + '/')]
    monkeypatch.setitem(tool.DEMOS, 'det', dict(
        tool.DEMOS['det'], config=tiny_det_config(tmp_path), pretrain=pretrain))
    return tool, out, tmp_path


def _run(tool, tmp_path, name, *extra):
    work = str(tmp_path / name)
    rc = tool.main(['det', '--work-dir', work, *extra])
    result = json.load(open(os.path.join(work, 'demo_result.json')))
    logs = {step: open(os.path.join(work, f'demo_{step}.log')).read()
            for step in result['seconds']}
    return rc, result, logs


@pytest.mark.slow
def test_det_job_pretrains_fine_tunes_from_it_and_tests(tiny_demo, monkeypatch):
    tool, out, tmp_path = tiny_demo
    load_it = ('--cfg-options', f'model.backbone.init_cfg.checkpoint={out}')
    rc, result, logs = _run(tool, tmp_path, 'first', *load_it)
    assert rc == 0
    assert list(result['seconds']) == ['pretrain', 'train', 'test']
    assert all(s > 0 for s in result['seconds'].values())
    total = result['checks']['total_seconds']
    assert total['value'] == pytest.approx(sum(result['seconds'].values()), abs=0.2)
    assert total['target'] == 15 * 60 and total['met']  # the README's budget, well within
    assert result['from_scratch'] is False
    # the metrics reported are those the test step logged
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        logged = re.search(rf'{key}: ([0-9.]+)', logs['test'])
        assert logged and result['metrics'][key] == pytest.approx(float(logged.group(1)))
    n = len(torch.load(out)['model']) - 9  # less norm (5 tensors), head, dist_head
    assert f'loaded {n}/' in logs['train'] and f'from {out} (official format)' in logs['train']
    # the test step evaluates the checkpoint; training did not validate it first
    assert 'Epoch(val)' not in logs['train'] and 'coco/bbox_mAP' in logs['test']

    # the same pretraining config again: reused, and said so (the steps after
    # it are not what this checks: the train step stops the job)
    real_run = tool._run
    monkeypatch.setattr(tool, '_run', lambda args, log: real_run(args, log)
                        if 'tools/pretrain_demo.py' in args else 7)
    mtime = os.path.getmtime(out)
    again = str(tmp_path / 'again')
    assert tool.main(['det', '--work-dir', again, *load_it]) == 7
    assert f'reusing {out}' in open(os.path.join(again, 'demo_pretrain.log')).read()
    assert os.path.getmtime(out) == mtime


@pytest.mark.slow
def test_det_job_from_scratch_skips_pretraining(tiny_demo, monkeypatch):
    tool, out, tmp_path = tiny_demo
    monkeypatch.setitem(tool.DEMOS['det'], 'max_total_s', 0.5)
    rc, result, logs = _run(tool, tmp_path, 'scratch', '--from-scratch', '--strict')
    assert list(result['seconds']) == ['train', 'test'] and result['from_scratch'] is True
    assert not os.path.exists(out) and 'SwiftFormer: loaded' not in logs['train']
    # --strict: an untrained tiny detector misses the mAP targets, exit 1; a
    # job over its time budget is reported as missing it
    assert not result['checks']['coco/bbox_mAP']['met'] and rc == 1
    total = result['checks']['total_seconds']
    assert total['target'] == 0.5 and total['value'] > 0.5 and not total['met']


def test_seed_reaches_pretraining_and_fine_tuning(monkeypatch, tmp_path):
    """--seed N: both the pretraining (its own checkpoint: the seed is part
    of its fingerprint) and the fine-tuning run with randomness.seed=N, the
    user's --cfg-options last."""
    tool = load_tool('run_demo')
    commands = []

    def fake_run(args, log_path):
        commands.append(args)
        return 0 if 'tools/pretrain_demo.py' in args else 7  # stop after the train step

    monkeypatch.setattr(tool, '_run', fake_run)
    work = str(tmp_path / 'w')
    assert tool.main(['det', '--seed', '3', '--work-dir', work,
                      '--cfg-options', 'randomness.seed=5']) == 7
    pretrain, train = commands
    assert pretrain[pretrain.index('--cfg-options') + 1:] == ['randomness.seed=3']
    options = train[train.index('--cfg-options') + 1:]
    assert options.index('randomness.seed=3') < options.index('randomness.seed=5')
    commands.clear()
    assert tool.main(['det', '--work-dir', work]) == 7  # no --seed: the configs' own
    assert not any('randomness.seed' in a for cmd in commands for a in cmd)
