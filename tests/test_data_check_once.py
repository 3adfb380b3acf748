"""One data check per job: in a 2-process launch rank 0 checks the datasets
and the other rank waits for its verdict; a failing check stops both."""
import glob
import os

import pytest

from .conftest import SEG_FIXED_64_PIPELINE, demo_config
from .test_distributed import _dist_train


def _config(tmp_path):
    """The seg demo on 6 train / 2 val images of 64x64, one iteration."""
    return demo_config(tmp_path, 'seg', dict(num_train=6, num_val=2, size=64, seed=1), '''
custom_imports = dict(imports=['mmswift', 'tests.datacheck_probe'], allow_failed_imports=False)
model = dict(data_preprocessor=dict(size=(64, 64)))
''' + SEG_FIXED_64_PIPELINE + '''
train_cfg = dict(max_iters=1, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=100), logger=dict(interval=1))
custom_hooks = []
''', batch_size=2, name='check_once.py', pipeline=True)


def _checks(markers):
    """(number of processes that checked, labels each one checked)"""
    found = sorted(glob.glob(os.path.join(markers, 'check.*')))
    return len(found), [open(p).read().split() for p in found]


@pytest.mark.slow
def test_two_ranks_check_the_data_once(tmp_path, monkeypatch):
    markers = tmp_path / 'markers'
    markers.mkdir()
    monkeypatch.setenv('MMSWIFT_TEST_CHECK_MARKERS', str(markers))
    done = _dist_train(_config(tmp_path), 2, '--work-dir', str(tmp_path / 'work'), timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    n, labels = _checks(markers)
    assert n == 1, log[-3000:]  # one process checked, the other waited
    assert labels == [['train_dataloader.dataset', 'val_dataloader.dataset']]
    assert log.count('checked the files of 6 samples of train_dataloader.dataset') == 1
    assert 'Distributed training: True' in log


@pytest.mark.slow
def test_a_failing_check_on_rank_zero_stops_both_ranks(tmp_path, monkeypatch):
    from mmengine.config import Config

    from mmswift.engine.datacheck import check_datasets
    markers = tmp_path / 'markers'
    markers.mkdir()
    monkeypatch.setenv('MMSWIFT_TEST_CHECK_MARKERS', str(markers))
    config = _config(tmp_path)
    check_datasets(Config.fromfile(config), ('train', ))  # generates the data
    bad = sorted(glob.glob(str(tmp_path / 'scenes' / 'images' / 'training' / '*.jpg')))[2]
    with open(bad, 'wb') as f:
        f.write(b'\x00garbage, not a JPEG')
    for old in glob.glob(os.path.join(markers, 'check.*')):
        os.remove(old)
    done = _dist_train(config, 2, '--work-dir', str(tmp_path / 'work'), timeout=120)
    log = done.stdout + done.stderr
    assert done.returncode != 0
    # both ranks print rank 0's message (then meet, so that torchrun, which
    # ends the others once one exits, cannot cut a report off); the two
    # lines may interleave in the shared pipe
    message = (f'error: 1 of 6 samples of train_dataloader.dataset have missing or unreadable '
               f'files (first: {bad}: not a readable image')
    assert log.count(message) == 2, log[-3000:]
    assert 'exitcode  : 2' in log
    assert _checks(markers)[0] == 1
    assert 'Distributed training' not in log  # no Runner was built


@pytest.mark.parametrize('n, bar', [(2000, True), (1999, False)])
def test_a_check_of_many_images_shows_progress(n, bar, capsys):
    from mmswift.engine.datacheck import find_bad_files
    problems = find_bad_files([(f'/no/such/dir/{i}.jpg', None) for i in range(n)], workers=1)
    assert len(problems) == n and problems[0] == '/no/such/dir/0.jpg: missing'
    out = capsys.readouterr().out
    assert (f'{n}/{n}' in out) == bar, out[-500:]
