"""What a cluster does to a training job: preemption, a second job in the
same work dir, a full disk, one rank failing, damaged images."""
import errno
import glob
import os
import signal
import socket
import subprocess
import time

import pytest
import torch

from mmswift.engine.workdir_claim import CLAIM_FILE, WorkDirClaim
from mmswift.errors import WorkDirBusyError
from mmswift.fileio import AtomicLocalBackend, checkpoint_problem

from .conftest import (PYTHON, REPO, demo_config, free_port, run_py, tiny_seg_config,
                       wait_for_file, with_test_hooks)
from .test_distributed import _deterministic_seg_config, _dist_train
from .test_resume import _losses


def _no_half_written_files(work):
    assert not glob.glob(os.path.join(work, '**', '*.tmp'), recursive=True)
    for path in glob.glob(os.path.join(work, '*.pth')):
        assert checkpoint_problem(path) is None, path


# ------------------------------------------------------ one job, one dir
def _write_claim(tmp_path, host, pid, age_s=0.0):
    import json
    path = tmp_path / CLAIM_FILE
    path.write_text(json.dumps(dict(host=host, pid=pid, start='2026-11-22 10:00:00', token='x')))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_a_live_claim_refuses_a_second_job_naming_the_first(tmp_path):
    first = WorkDirClaim(str(tmp_path)).acquire()
    try:
        with pytest.raises(WorkDirBusyError) as e:
            WorkDirClaim(str(tmp_path)).acquire()
        msg = str(e.value)
        assert f'host {socket.gethostname()}, pid {os.getpid()}, started {first.info["start"]}' in msg
        assert '--work-dir' in msg and '\n' not in msg
    finally:
        first.release()
    assert not (tmp_path / CLAIM_FILE).exists()
    WorkDirClaim(str(tmp_path)).acquire().release()  # free again


def test_a_claim_left_by_a_killed_job_is_taken_over(tmp_path, monkeypatch):
    import mmswift.engine.workdir_claim as workdir_claim
    logged = []  # what the claim logs (mmengine's logger keeps the stdout it was built with)
    monkeypatch.setattr(workdir_claim, 'print_log', lambda msg, **kwargs: logged.append(msg))
    gone = subprocess.Popen(['true'])
    gone.wait()  # a pid that no longer exists
    _write_claim(tmp_path, socket.gethostname(), gone.pid)
    claim = WorkDirClaim(str(tmp_path)).acquire()
    assert len(logged) == 1
    assert f'took over the work dir claim of host {socket.gethostname()}, pid {gone.pid}' in \
        logged[0]
    assert 'no longer exists' in logged[0]
    claim.release()


def test_on_a_shared_filesystem_another_hosts_heartbeat_decides(tmp_path):
    _write_claim(tmp_path, 'node-b', 4242, age_s=5)  # alive on another host
    with pytest.raises(WorkDirBusyError, match='host node-b, pid 4242'):
        WorkDirClaim(str(tmp_path)).acquire()
    _write_claim(tmp_path, 'node-b', 4242, age_s=300)  # its heartbeat stopped
    WorkDirClaim(str(tmp_path)).acquire().release()


def test_the_heartbeat_keeps_a_live_claim_fresh(tmp_path):
    claim = WorkDirClaim(str(tmp_path), heartbeat_s=0.05).acquire()
    try:
        old = time.time() - 1000
        os.utime(claim.path, (old, old))
        deadline = time.monotonic() + 60  # a beat is due every 0.05 s; 60 s is any load
        while os.path.getmtime(claim.path) < old + 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.getmtime(claim.path) > old + 500  # refreshed
    finally:
        claim.release()


# ----------------------------------------------------------- a full disk
@pytest.mark.parametrize('err', [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, err):
    import os as real_os
    import tempfile

    import mmswift.fileio as fileio

    from .fault_injection import _With
    path = tmp_path / 'iter_2.pth'
    path.write_bytes(b'complete old checkpoint')

    def fail(*args, **kwargs):
        raise OSError(err, real_os.strerror(err))
    if err == errno.EACCES:
        monkeypatch.setattr(fileio, 'tempfile', _With(tempfile, mkstemp=fail))
    else:
        monkeypatch.setattr(fileio, 'os', _With(real_os, fsync=fail))
    with pytest.raises(OSError) as e:
        AtomicLocalBackend().put(b'new checkpoint', str(path))
    assert e.value.errno == err
    assert path.read_bytes() == b'complete old checkpoint'
    assert os.listdir(tmp_path) == ['iter_2.pth']


@pytest.mark.slow
@pytest.mark.parametrize('err', ['ENOSPC', 'EIO', 'EACCES'])
def test_training_stops_on_a_failed_checkpoint_write_with_the_last_good_one(tmp_path, err):
    code = getattr(errno, err)
    config = demo_config(tmp_path, 'seg', dict(num_train=4, num_val=1, size=64, seed=1), f'''
custom_imports = dict(imports=['mmswift', 'tests.fault_injection'], allow_failed_imports=False)
train_cfg = dict(max_iters=6, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=1), logger=dict(interval=1))
custom_hooks = _base_.robust_training_hooks + [dict(type='FullDiskHook', at=3, errno={code})]
''')
    work = str(tmp_path / 'work')
    proc = run_py('tools/train.py', config, '--work-dir', work)
    line = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stderr[-2000:]
    good = os.path.join(work, 'iter_2.pth')
    assert line == (f'error: could not write {os.path.join(work, "iter_4.pth")}: '
                    f'{os.strerror(code)} (errno {code}); nothing was overwritten, no temporary '
                    f'file is left, and the last good checkpoint is {good}; free space or '
                    f'restore write access, then train with --resume')
    assert open(os.path.join(work, 'last_checkpoint')).read() == good
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(work, '*.pth'))) == \
        ['iter_2.pth']
    _no_half_written_files(work)


# ------------------------------------------------------------ preemption
def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


def _preempt_while_held(config, work, gate, at, while_held):
    """Train with the job held after iteration ``at`` (HoldAtIterHook), call
    ``while_held(proc)``, send SIGTERM, and release the job once it has taken
    the signal: it is preempted at iteration ``at`` whatever the load.
    Returns (exit status, stderr)."""
    held = with_test_hooks(config, gate + '.py',
                           f"dict(type='HoldAtIterHook', at={at}, folder={gate!r})")
    os.makedirs(gate)
    log = os.path.join(gate, 'stderr.txt')  # a file: a full pipe would block the job
    with open(log, 'w') as err:
        proc = subprocess.Popen([PYTHON, 'tools/train.py', held, '--work-dir', work], cwd=REPO,
                                env=dict(os.environ, PYTHONPATH=REPO),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for_file(os.path.join(gate, 'held'), proc, log)
        while_held(proc)
        proc.send_signal(signal.SIGTERM)
        wait_for_file(os.path.join(gate, 'signalled'), proc, log)
        open(os.path.join(gate, 'release'), 'w').close()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:  # the test failed while the job was held
            proc.kill()
            proc.wait()
    return proc.returncode, open(log).read()


@pytest.mark.slow
@pytest.mark.parametrize('task', ['seg', 'det'])
def test_sigterm_writes_a_checkpoint_exits_3_and_resume_is_exact(tmp_path, task, uninterrupted):
    """seg: an iteration loop, preempted between its checkpoints; det: an
    epoch loop (4 iterations an epoch), preempted mid-epoch. Both after
    iteration 5: seg between the checkpoints of 4 and 8, det in epoch 2."""
    config, full = uninterrupted(task)
    final = 'iter_12.pth' if task == 'seg' else 'epoch_3.pth'
    cut = str(tmp_path / 'cut')

    def second_job_is_refused(first):
        before = _files(cut)  # the first job is held: nothing else writes there
        second = run_py('tools/train.py', config, '--work-dir', cut)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f'work dir {cut} is in use by another training job (host ' \
            f'{socket.gethostname()}, pid {first.pid}, started' in second.stderr
        assert _files(cut) == before  # refused before it wrote anything

    rc, err = _preempt_while_held(config, cut, str(tmp_path / 'gate'), 5,
                                  second_job_is_refused)
    line = err.strip().splitlines()[-1]
    assert rc == 3, err[-3000:]
    ckpt = os.path.join(cut, 'iter_5.pth')
    assert line == ('preempted: SIGTERM received; finished iteration 5 and wrote the complete '
                    f'checkpoint {ckpt}; requeue the job with --resume to continue exactly '
                    'from there')
    assert max(_losses(cut)) == 5  # it stopped there
    assert open(os.path.join(cut, 'last_checkpoint')).read() == ckpt
    _no_half_written_files(cut)

    resumed = run_py('tools/train.py', config, '--work-dir', cut, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert f'Load checkpoint from {ckpt}' in log
    epoch = 1 if task == 'det' else 0  # det: in epoch 2 (0-based 1), 1 of its 4 iterations done
    assert f'resumed epoch: {epoch}, iter: 5' in log
    a = torch.load(os.path.join(full, final))['state_dict']
    b = torch.load(os.path.join(cut, final))['state_dict']
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    la, lb = _losses(full), _losses(cut)
    assert sorted(la) == list(range(1, 13)) and la == lb


# ---------------------------------------------------- every rank agrees
@pytest.mark.slow
@pytest.mark.parametrize('failure', ['data', 'loss', 'sigterm'])
def test_one_rank_failing_stops_every_rank(tmp_path, failure):
    gate = str(tmp_path / 'gate')
    hook = {'data': "dict(type='FailDataOnRankHook', rank=1, at=4)",
            'loss': "dict(type='PoisonWeightsHook', at=4, when='before', rank=1)",
            'sigterm': f"dict(type='HoldAtIterHook', at=4, rank=1, folder={gate!r})"}[failure]
    base = _deterministic_seg_config(tmp_path)
    config = str(tmp_path / 'ranks.py')
    with open(config, 'w') as f:
        f.write(f'''_base_ = {base!r}
custom_imports = dict(imports=['mmswift', 'tests.fault_injection'], allow_failed_imports=False)
train_cfg = dict(max_iters=40)
custom_hooks = _base_.robust_training_hooks + [{hook}]
''')
    work = str(tmp_path / 'work')
    args = ['--work-dir', work, '--cfg-options', 'train_dataloader.batch_size=2']
    # the timeouts catch a hang (gloo would wait 30 minutes), not a slow machine
    if failure == 'sigterm':
        env = dict(os.environ, PYTHON=PYTHON, PORT=str(free_port()), PYTHONPATH=REPO,
                   OMP_NUM_THREADS='1')
        os.makedirs(gate)
        out = os.path.join(gate, 'log.txt')  # a file: a full pipe would block the job
        with open(out, 'w') as f:
            proc = subprocess.Popen(['bash', 'tools/dist_train.sh', config, '2', *args],
                                    cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:  # rank 1 is held after iteration 4, rank 0 waits for it
            rank1 = int(wait_for_file(os.path.join(gate, 'held'), proc, out))
            os.kill(rank1, signal.SIGTERM)  # one rank only
            wait_for_file(os.path.join(gate, 'signalled'), proc, out)
            open(os.path.join(gate, 'release'), 'w').close()
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:  # the test failed: end torchrun and both ranks
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log = open(out).read()
    else:
        done = _dist_train(config, 2, *args, timeout=600)
        log = done.stdout + done.stderr
    if failure == 'data':
        assert 'injected data loading failure on rank 1 at iteration 4' in log
    elif failure == 'loss':  # both ranks see the all-reduced loss and stop together
        assert log.count('loss became nan at iteration 4 on at least one rank') == 2, log[-3000:]
    else:  # both ranks stop after the iteration rank 1 took the signal in
        lines = [ln for ln in log.splitlines() if ln.startswith('preempted: SIGTERM received')]
        assert len(lines) == 2 and lines[0] == lines[1], log[-3000:]
        assert 'finished iteration 4 and wrote the complete checkpoint' in lines[0]
        assert checkpoint_problem(os.path.join(work, 'iter_4.pth')) is None
    _no_half_written_files(work)


# ------------------------------------------------------- damaged images
def test_full_data_check_finds_a_jpeg_cut_after_its_header(tmp_path):
    from mmengine.config import Config

    from mmswift.engine.datacheck import check_datasets
    from mmswift.errors import DatasetError
    cfg = Config.fromfile(tiny_seg_config(tmp_path))
    assert check_datasets(cfg, ('train', ), full=True) == 4  # generates the data
    image = sorted(glob.glob(str(tmp_path / 'scenes' / 'images' / 'training' / '*.jpg')))[1]
    data = open(image, 'rb').read()
    with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])  # the header survives, half the pixels do not
    assert check_datasets(cfg, ('train', )) == 4  # the header check cannot see it
    with pytest.raises(DatasetError) as e:
        check_datasets(cfg, ('train', ), full=True)
    assert f'{image}: truncated (the image data ends early)' in str(e.value)


def test_the_runner_reuses_the_datasets_the_check_built(tmp_path):
    """The annotation file is parsed once: the Runner gets the checked
    dataset object itself, not a rebuilt one or a deep copy."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from mmswift.engine.datacheck import check_datasets, reuse_checked_datasets
    cfg = Config.fromfile(tiny_seg_config(tmp_path))
    cfg.work_dir = str(tmp_path / 'work')
    built = {}
    check_datasets(cfg, ('train', 'val'), built=built)
    assert set(built) == {'train', 'val'}
    runner = Runner.from_cfg(cfg)
    reuse_checked_datasets(runner, built)
    assert runner.build_dataloader(runner._train_dataloader).dataset is built['train']
    assert runner.build_dataloader(runner._val_dataloader).dataset is built['val']


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_data_scale_benchmark_runs_and_reports(tmp_path, task):
    out = tmp_path / 'report.json'
    proc = run_py('tools/benchmark_data.py', task, '--root', str(tmp_path / 'data'),
                  '--scale', '0.002', '--json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    report = json.loads(out.read_text())
    rows = report['results']
    expected = 237 if task == 'det' else 40  # samples: COCO images with instances / ADE pairs
    assert set(rows) == {'build', 'check', 'full'}
    for r in rows.values():
        assert 0 < r['samples'] <= expected and r['seconds'] > 0 and r['peak_rss_mb'] > 0
    assert rows['check']['samples'] == rows['build']['samples']
    assert 'data check (tools/train.py)' in proc.stdout
