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

from .conftest import PYTHON, REPO, logged_scalars, run_py, wait_for_file, with_test_hooks


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
def _losses(work):
    """iteration -> loss, from every run in the work dir; later runs win."""
    return {rec['iter']: rec['loss'] for rec in logged_scalars(work) if 'loss' in rec}


def _train_until_killed(config, work, gate, marker, *args):
    """Train ``config`` (with a hook of tests/fault_injection.py that holds
    the job at a chosen point and writes ``gate/marker`` there) and SIGKILL
    it once held. Returns the marker's text and the job's log."""
    os.makedirs(gate)
    out = os.path.join(gate, 'log.txt')  # a file: a full pipe would block the job
    with open(out, 'w') as f:
        proc = subprocess.Popen([PYTHON, 'tools/train.py', config, '--work-dir', work, *args],
                                cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        text = wait_for_file(os.path.join(gate, marker), proc, out)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was still held, not finished
    return text, open(out).read()


def _only_complete_checkpoints(work):
    paths = glob.glob(os.path.join(work, '*.pth'))
    assert paths
    for path in paths:
        assert checkpoint_problem(path) is None, path


def _resume_equals_uninterrupted(tmp_path, reference, hold, writing, final_ckpt):
    """Kill the job twice, then resume it to the end: first between
    checkpoints (held after iteration ``hold[0]``; resumes from
    ``hold[1]``), then, resumed, halfway through writing the checkpoint
    ``writing[0]`` (resumes from ``writing[1]``). ``reference``: the
    config and work dir of the uninterrupted run (conftest's fixture)."""
    config, full = reference
    cut = str(tmp_path / 'cut')

    # 1. killed between two checkpoints
    at, complete = hold[0], os.path.join(cut, hold[1])
    gate = str(tmp_path / 'held')
    with_hold = with_test_hooks(config, str(tmp_path / 'held.py'),
                                f"dict(type='HoldAtIterHook', at={at}, folder={gate!r})")
    _train_until_killed(with_hold, cut, gate, 'held')
    assert max(_losses(cut)) == at
    _only_complete_checkpoints(cut)
    assert find_resumable_checkpoint(cut) == complete

    # 2. resumed, killed while a checkpoint is half-written
    name, complete2 = writing[0], os.path.join(cut, writing[1])
    gate = str(tmp_path / 'writing')
    with_pause = with_test_hooks(config, str(tmp_path / 'pause.py'),
                                 f"dict(type='PauseCheckpointWriteHook', name={name!r}, "
                                 f"folder={gate!r})")
    tmp, log = _train_until_killed(with_pause, cut, gate, 'writing', '--resume')
    assert f'Load checkpoint from {complete}' in log
    assert os.path.dirname(tmp) == cut and os.path.basename(tmp).startswith(f'.{name}.')
    assert checkpoint_problem(tmp).startswith('truncated')  # the kill cut it halfway
    assert not os.path.exists(os.path.join(cut, name))
    _only_complete_checkpoints(cut)
    assert find_resumable_checkpoint(cut) == complete2

    resumed = run_py('tools/train.py', config, '--work-dir', cut, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f'Load checkpoint from {complete2}' in log and 'resumed epoch' in log

    a = torch.load(os.path.join(full, final_ckpt))['state_dict']
    b = torch.load(os.path.join(cut, final_ckpt))['state_dict']
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    la, lb = _losses(full), _losses(cut)
    assert sorted(la) == list(range(1, 13))  # every iteration, logged once
    assert la == lb


@pytest.mark.slow
def test_killed_seg_training_resumes_to_the_same_weights_and_losses(tmp_path, uninterrupted):
    """12 iterations, a checkpoint every 4: held after iteration 6, then cut
    writing the last checkpoint."""
    _resume_equals_uninterrupted(tmp_path, uninterrupted('seg'), (6, 'iter_4.pth'),
                                 ('iter_12.pth', 'iter_8.pth'), 'iter_12.pth')


@pytest.mark.slow
def test_killed_det_training_resumes_to_the_same_weights_and_losses(tmp_path, uninterrupted):
    """4 iterations an epoch: held in epoch 2, then cut writing epoch 3's checkpoint."""
    _resume_equals_uninterrupted(tmp_path, uninterrupted('det'), (6, 'epoch_1.pth'),
                                 ('epoch_3.pth', 'epoch_2.pth'), 'epoch_3.pth')
