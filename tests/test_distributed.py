"""Two gloo processes on CPU train exactly like one process with the same
total batch, and a failure in one rank ends the whole job."""
import glob
import os
import subprocess

import pytest
import torch

from .conftest import (PYTHON, REPO, SEG_FIXED_64_PIPELINE, demo_config, free_port,
                       logged_scalars, run_py, write_config)



def _dist_train(config, procs, *args, timeout=600):
    env = dict(os.environ, PYTHON=PYTHON, PORT=str(free_port()), PYTHONPATH=REPO,
               OMP_NUM_THREADS='1', PYTHONFAULTHANDLER='1')  # a crash shows its stack
    return subprocess.run(['bash', 'tools/dist_train.sh', config, str(procs), *args],
                          cwd=REPO, env=env, text=True, capture_output=True,
                          timeout=timeout)


def _deterministic_seg_config(tmp_path):
    """Semantic FPN whose loss does not depend on how the batch is split:
    no batch statistics (BN in eval, no norm in the head), no dropout, no
    random augmentation, every image the same size."""
    return demo_config(tmp_path, 'seg', dict(num_train=16, num_val=1, size=64, seed=1),
                       SEG_FIXED_64_PIPELINE + '''
model = dict(data_preprocessor=dict(size=(64, 64)),
             backbone=dict(norm_eval=True),
             decode_head=dict(norm_cfg=None, dropout_ratio=0.0))
train_cfg = dict(max_iters=8, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=8), logger=dict(interval=1))
log_processor = dict(window_size=1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=8)]
custom_hooks = _base_.robust_training_hooks
''', batch_size=4, name='split_seg.py', pipeline=True)


def _losses(work, key):
    assert len(glob.glob(os.path.join(work, '*', 'vis_data', 'scalars.json'))) == 1
    return [rec[key] for rec in logged_scalars(work) if key in rec]


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one(tmp_path):
    cfg = _deterministic_seg_config(tmp_path)
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    single = run_py('tools/train.py', cfg, '--work-dir', one)
    assert single.returncode == 0, single.stderr[-3000:]
    dist = _dist_train(cfg, 2, '--work-dir', two, '--cfg-options',
                       'train_dataloader.batch_size=2')
    assert dist.returncode == 0, (dist.stdout + dist.stderr)[-3000:]

    curve_one = torch.tensor(_losses(one, 'loss'), dtype=torch.float64)
    curve_two = torch.tensor(_losses(two, 'loss_all_ranks'), dtype=torch.float64)
    assert len(curve_one) == len(curve_two) == 8
    assert curve_one[0] > curve_one[-1]  # it trains
    # float32 sums in another order (gloo all-reduce) are all that differ
    torch.testing.assert_close(curve_two, curve_one, rtol=1e-4, atol=0)
    rank0 = torch.tensor(_losses(two, 'loss'), dtype=torch.float64)
    assert not torch.allclose(rank0, curve_one, rtol=1e-3)  # rank 0 alone sees half

    # AdamW moves a weight by at most ~lr per step, and for weights whose
    # gradient is ~0 the all-reduce rounding can change that step's sign:
    # the weights must agree to 1% of the largest possible total update.
    a = torch.load(os.path.join(one, 'iter_8.pth'))['state_dict']
    b = torch.load(os.path.join(two, 'iter_8.pth'))['state_dict']
    max_update = 2e-3 * 8  # lr x iterations
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0.01 * max_update, msg=k)


@pytest.mark.slow
def test_a_failing_rank_ends_the_whole_job(tmp_path):
    cfg = write_config(tmp_path / 'fail.py', os.path.relpath(
        _deterministic_seg_config(tmp_path), REPO), '''
custom_imports = dict(imports=['mmswift', 'tests.fault_injection'], allow_failed_imports=False)
train_cfg = dict(max_iters=50)
custom_hooks = _base_.robust_training_hooks + [dict(type='FailOnRankHook', rank=1, at=3)]
''')
    # the timeout catches a hang (gloo would wait 30 minutes), not a slow machine
    proc = _dist_train(cfg, 2, '--work-dir', str(tmp_path / 'work'),
                       '--cfg-options', 'train_dataloader.batch_size=2', timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'injected failure on rank 1 at iteration 3' in log
