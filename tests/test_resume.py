"""Interrupted training loses nothing: atomic checkpoint files, --resume
picks the newest complete checkpoint, and a SIGKILLed, resumed run ends
with the same weights and losses as an uninterrupted one."""
import glob
import os
import signal
import subprocess
import time

import pytest
import torch

from mmswift.fileio import atomic_write, checkpoint_problem, find_resumable_checkpoint

from .conftest import PYTHON, REPO, demo_config, logged_scalars, run_py


# ------------------------------------------------------------ unit level
def test_atomic_write_leaves_the_old_file_when_the_write_dies(tmp_path, monkeypatch):
    path = str(tmp_path / 'iter_4.pth')
    atomic_write(b'old complete file', path)

    def die(*args):  # the process "dies" after the data went to disk
        raise KeyboardInterrupt('killed')
    monkeypatch.setattr(os, 'replace', die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(b'new, never finished', path)
    assert open(path, 'rb').read() == b'old complete file'
    assert os.listdir(tmp_path) == ['iter_4.pth']  # no temporary file left behind


def test_atomic_files_get_the_usual_permissions(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    atomic_write('x', path)
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def _save(path, step):
    torch.save({'meta': {'iter': step}, 'state_dict': {'w': torch.full((64,), step)}},
               path)
    return path


def test_resume_skips_a_checkpoint_cut_off_while_writing(tmp_path):
    """A work dir as plain mmengine leaves it when killed in torch.save."""
    work = str(tmp_path)
    good = _save(os.path.join(work, 'iter_4.pth'), 4)
    cut = _save(os.path.join(work, 'iter_8.pth'), 8)
    data = open(cut, 'rb').read()
    open(cut, 'wb').write(data[:len(data) // 2])
    os.utime(good, (time.time() - 10, time.time() - 10))
    with open(os.path.join(work, 'last_checkpoint'), 'w') as f:
        f.write(cut)
    assert 'truncated' in checkpoint_problem(cut)
    assert checkpoint_problem(good) is None
    assert find_resumable_checkpoint(work) == good
    open(os.path.join(work, 'last_checkpoint'), 'w').close()  # cut off too
    assert find_resumable_checkpoint(work) == good


# ---------------------------------------------------------- end to end
def _seg_config(tmp_path, max_iters=24):
    return demo_config(tmp_path, 'seg', dict(num_train=8, num_val=2, size=64, seed=1), f'''
train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})
default_hooks = dict(checkpoint=dict(interval=4, max_keep_ckpts=2), logger=dict(interval=1))
log_processor = dict(window_size=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
custom_hooks = _base_.robust_training_hooks
''')


def _det_config(tmp_path, max_epochs=3):
    return demo_config(tmp_path, 'det', dict(num_train=16, num_val=2, size=96, seed=1), f'''
train_cfg = dict(max_epochs={max_epochs}, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2), logger=dict(interval=1))
log_processor = dict(window_size=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
custom_hooks = _base_.robust_training_hooks
''')


def _losses(work):
    """iteration -> loss, from every run in the work dir; later runs win."""
    return {rec['iter']: rec['loss'] for rec in logged_scalars(work) if 'loss' in rec}


def _kill_during_training(config, work, first_ckpt):
    """Start training; SIGKILL it while a checkpoint after ``first_ckpt`` is
    being written if we catch one in flight, else right after it appears."""
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([PYTHON, 'tools/train.py', config, '--work-dir', work],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(os.path.join(work, first_ckpt)):
            break
        time.sleep(0.05)
    before = set(glob.glob(os.path.join(work, '*.pth')))
    while time.time() < deadline and proc.poll() is None:
        if glob.glob(os.path.join(work, '.*.tmp')) or \
                set(glob.glob(os.path.join(work, '*.pth'))) - before:
            break
        time.sleep(0.001)
    assert proc.poll() is None, 'training ended before it could be killed'
    in_flight = bool(glob.glob(os.path.join(work, '.*.tmp')))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return in_flight


def _resume_equals_uninterrupted(tmp_path, config, first_ckpt, final_ckpt):
    full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
    run = run_py('tools/train.py', config, '--work-dir', full)
    assert run.returncode == 0, run.stderr[-3000:]

    _kill_during_training(config, cut, first_ckpt)
    for path in glob.glob(os.path.join(cut, '*.pth')):  # only complete files
        assert checkpoint_problem(path) is None, path
    resume_from = find_resumable_checkpoint(cut)
    assert resume_from is not None and resume_from != os.path.join(cut, final_ckpt)
    resumed = run_py('tools/train.py', config, '--work-dir', cut, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f'Load checkpoint from {resume_from}' in log and 'resumed epoch' in log

    a = torch.load(os.path.join(full, final_ckpt))['state_dict']
    b = torch.load(os.path.join(cut, final_ckpt))['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    la, lb = _losses(full), _losses(cut)
    assert len(la) >= 20 and la.keys() == lb.keys()
    assert la == lb


@pytest.mark.slow
def test_killed_seg_training_resumes_to_the_same_weights_and_losses(tmp_path):
    _resume_equals_uninterrupted(tmp_path, _seg_config(tmp_path), 'iter_8.pth', 'iter_24.pth')


@pytest.mark.slow
def test_killed_det_training_resumes_to_the_same_weights_and_losses(tmp_path):
    _resume_equals_uninterrupted(tmp_path, _det_config(tmp_path), 'epoch_1.pth', 'epoch_3.pth')
