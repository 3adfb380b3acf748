"""Each fix in mmswift.compat, shown necessary (the failure without it, in a
process that does not import mmswift) and sufficient (with it)."""
import pickle

import pytest
import torch

import mmswift  # noqa: F401  (applies the fixes in this process)

from .conftest import free_port, run_py


def _runner_checkpoint(work_dir) -> str:
    """A real mmengine Runner checkpoint (message hub, numpy, schedulers)."""
    import torch.nn as nn
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x, mode='tensor'):
            out = self.fc(torch.stack(x))
            return dict(loss=out.pow(2).mean()) if mode == 'loss' else out

    class Data(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return dict(x=torch.full((2, ), float(i)))

    runner = Runner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=Data(), batch_size=2,
                              sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', by_epoch=False, begin=0, end=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False)))
    runner.train()
    return str(work_dir / 'iter_2.pth')


@pytest.mark.slow
def test_runner_checkpoint_needs_and_gets_the_allowlist(tmp_path):
    ckpt = _runner_checkpoint(tmp_path)
    load = f'import torch; c = torch.load({ckpt!r}); print(sorted(c))'
    without = run_py('-c', load)
    assert without.returncode != 0
    assert 'Weights only load failed' in without.stderr
    with_fix = run_py('-c', 'import mmswift; ' + load)
    assert with_fix.returncode == 0, with_fix.stderr
    assert "'message_hub'" in with_fix.stdout and "'optimizer'" in with_fix.stdout
    # and it is still weights_only: the HistoryBuffer comes back as data
    ckpt_obj = torch.load(ckpt)
    assert 'train/lr' in ckpt_obj['message_hub']['log_scalars']


class _Evil:
    def __init__(self, attr):
        self.attr = attr

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, self.attr))


def test_restricted_getattr_allows_only_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer
    ok = tmp_path / 'ok.pth'
    torch.save({'m': _Evil('max')}, ok)
    assert torch.load(ok)['m'] is HistoryBuffer.max
    evil = tmp_path / 'evil.pth'
    torch.save({'m': _Evil('__init__')}, evil)
    with pytest.raises(pickle.UnpicklingError, match='__init__'):
        torch.load(evil)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='the fix is for CPU-only machines')
def test_init_dist_pytorch_on_cpu_uses_gloo():
    env = dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()))
    code = ("from mmengine.dist import init_dist; import torch.distributed as d; "
            "init_dist('pytorch', backend='nccl'); print(d.get_backend(), d.get_world_size())")
    without = run_py('-c', code, env=env, timeout=120)
    assert without.returncode != 0
    with_fix = run_py('-c', 'import mmswift; ' + code, env=env, timeout=120)
    assert with_fix.returncode == 0, with_fix.stderr
    assert with_fix.stdout.split() == ['gloo', '1']


@pytest.mark.parametrize('version', ['0.9.1', '0.11.0', '1.0.0'])
def test_mmengine_internals_are_overridden_only_on_known_versions(version, monkeypatch):
    import mmengine

    from mmswift.engine.hooks import AtomicCheckpointHook, StepSeedHook
    AtomicCheckpointHook(interval=1)  # the installed mmengine is a known one
    StepSeedHook()
    monkeypatch.setattr(mmengine, '__version__', version)
    for build in (lambda: AtomicCheckpointHook(interval=1), StepSeedHook):
        with pytest.raises(RuntimeError) as e:
            build()
        assert f'mmengine {version} is installed' in str(e.value)
        assert 'mmengine>=0.10.0,<0.11.0' in str(e.value)
