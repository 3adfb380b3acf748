"""Each fix in mmswift.compat, shown necessary (the failure without it, in a
process that does not apply it) and sufficient (with it); where the fixes
are applied (tools, a Runner built from an mmswift config) and where not
(``import mmswift``, building the backbone)."""
import os
import pickle

import pytest
import torch

from mmswift.compat import apply_all

from .conftest import free_port, run_py, tiny_seg_config

APPLY = 'from mmswift.compat import apply_all; apply_all(); '


@pytest.fixture
def fixed():
    """The fixes, applied in this process (as a tool or an mmswift hook would)."""
    apply_all()


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
def test_runner_checkpoint_needs_and_gets_the_allowlist(tmp_path, fixed):
    ckpt = _runner_checkpoint(tmp_path)
    load = f'import torch; c = torch.load({ckpt!r}); print(sorted(c))'
    without = run_py('-c', load)
    assert without.returncode != 0
    assert 'Weights only load failed' in without.stderr
    imported = run_py('-c', 'import mmswift; ' + load)  # importing alone fixes nothing
    assert imported.returncode != 0 and 'Weights only load failed' in imported.stderr
    with_fix = run_py('-c', APPLY + load)
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


def test_restricted_getattr_allows_only_history_buffer_statistics(tmp_path, fixed):
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
    with_fix = run_py('-c', APPLY + code, env=env, timeout=120)
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


# ------------------------------------------------- where the fixes apply
UNTOUCHED = r'''
import sys
import torch
import torch.distributed.tensor  # noqa: F401  (torch allowlists its own types on import)
import mmengine
import mmengine.model, mmengine.runner  # noqa: F401,E401
from mmengine.dist import utils as dist_utils
from mmengine.fileio.backends.registry_utils import backends, prefix_to_backends
if sys.argv[1] != 'installed':
    mmengine.__version__ = sys.argv[1]


def state():
    return (list(torch.serialization.get_safe_globals()), dist_utils._init_dist_pytorch,
            dict(backends), dict(prefix_to_backends))


before = state()
import mmswift  # noqa: E402,F401
from mmengine.registry import MODELS  # noqa: E402
backbone = MODELS.build(dict(type='mmswift.SwiftFormer', arch='xs')).eval()
with torch.no_grad():
    out = backbone(torch.randn(1, 3, 64, 64))
after = state()
print('untouched', *[a == b for a, b in zip(after, before)])
print('features', *[tuple(o.shape[1:]) for o in out])
'''


@pytest.mark.parametrize('version', ['installed', pytest.param('0.11.2', marks=pytest.mark.slow),
                                     pytest.param('1.0.0', marks=pytest.mark.slow)])
def test_import_and_backbone_build_change_nothing_on_any_mmengine(version):
    """``import mmswift`` (a config's custom_imports) and building the
    backbone leave torch's safe globals, mmengine.dist's init function and
    the file backends as they were, and need no particular mmengine."""
    proc = run_py('-c', UNTOUCHED, version, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2] == 'untouched True True True True', proc.stdout
    assert lines[-1] == 'features (48, 16, 16) (56, 8, 8) (112, 4, 4) (220, 2, 2)'


def test_apply_all_warns_on_an_unknown_mmengine_instead_of_raising(monkeypatch):
    import mmengine
    from mmengine.dist import utils as dist_utils

    import mmswift.compat as compat
    # as mmengine has it (not yet patched by an earlier test); restored afterwards
    monkeypatch.setattr(dist_utils, '_init_dist_pytorch', lambda *args, **kwargs: None)
    monkeypatch.setattr(compat, '_warned_dist', False)
    monkeypatch.setattr(mmengine, '__version__', '0.11.0')
    with pytest.warns(UserWarning) as warned:
        apply_all()
    message = str(warned[0].message)
    assert 'distributed runs on CPU-only machines' in message  # what will not work
    assert 'mmengine 0.11.0 is installed' in message
    assert 'HistoryBuffer' in repr(torch.serialization.get_safe_globals())  # fix 1 is in


RUNNER_BUILT = r'''
import sys
import torch
from mmengine.config import Config
from mmengine.dist import utils as dist_utils
from mmengine.fileio.backends.registry_utils import backends
from mmengine.runner import Runner


def load():
    try:
        torch.load(sys.argv[2])
        return 'loaded'
    except Exception as e:
        return 'refused' if 'Weights only load failed' in str(e) else repr(e)


cfg = Config.fromfile(sys.argv[1])  # imports mmswift (custom_imports)
cfg.work_dir = sys.argv[3]
print('before', load(), 'mmswift_atomic' in backends,
      hasattr(dist_utils._init_dist_pytorch, '_mmswift_patched'))
runner = Runner.from_cfg(cfg)
print('after', load(), 'mmswift_atomic' in backends,
      hasattr(dist_utils._init_dist_pytorch, '_mmswift_patched'))
'''


@pytest.mark.slow
def test_a_runner_built_from_an_mmswift_config_applies_the_fixes(tmp_path):
    """What mmdet's / mmseg's own tools do with an mmswift config: the
    config imports mmswift (nothing applied yet), the Runner builds the
    config's mmswift hooks, which apply the fixes before train()/test()
    load or resume a checkpoint."""
    ckpt = _runner_checkpoint(tmp_path / 'toy')
    proc = run_py('-c', RUNNER_BUILT, tiny_seg_config(tmp_path), ckpt, str(tmp_path / 'work'),
                  timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert 'before refused False False' in lines, proc.stdout
    assert lines[-1] == 'after loaded True True'


def _mmseg_train_tool() -> str:
    import mmseg
    path = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    assert os.path.isfile(path), f'mmseg is installed without its tools ({path})'
    return path


@pytest.mark.slow
def test_mmseg_own_train_tool_resumes_an_mmswift_config(tmp_path):
    """mmseg's tools/train.py --resume, an mmswift config, torch >= 2.6
    (weights_only loads): the Runner checkpoint is resumed."""
    work = str(tmp_path / 'work')
    tool = _mmseg_train_tool()
    first = run_py(tool, tiny_seg_config(tmp_path, max_iters=1), '--work-dir', work,
                   env=dict(OMP_NUM_THREADS='1'), timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert os.path.isfile(os.path.join(work, 'iter_1.pth'))
    resumed = run_py(tool, tiny_seg_config(tmp_path, max_iters=2), '--work-dir', work,
                     '--resume', env=dict(OMP_NUM_THREADS='1'), timeout=300)
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert 'resumed epoch: 0, iter: 1' in log, log[-3000:]
    assert os.path.isfile(os.path.join(work, 'iter_2.pth'))


READ = r'''
import sys
import torch
import torch.distributed.tensor  # noqa: F401
from mmswift.fileio import read_checkpoint
before = sorted(map(repr, torch.serialization.get_safe_globals()))  # the order may change
ckpt = read_checkpoint(sys.argv[1])
print('read', 'message_hub' in ckpt,
      sorted(map(repr, torch.serialization.get_safe_globals())) == before)
'''


@pytest.mark.slow  # a clean interpreter per case
def test_mmswift_reader_allows_runner_checkpoints_for_its_own_load_only(tmp_path):
    """init_cfg, tools/test.py's check and the converters read a Runner
    checkpoint without apply_all(), and torch's list is left as it was."""
    proc = run_py('-c', READ, _runner_checkpoint(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == 'read True True'


def test_a_load_inside_mmswift_leaves_the_process_allowlist_as_it_was():
    """mmswift's own loads allow the Runner types for their block only; a
    process where apply_all() allowed them (mmswift's tools, before a
    --resume) keeps them afterwards: torch's safe_globals() context manager
    would drop them on exit, and the resume would then fail."""
    from mmswift.compat import allowed_checkpoint_types, apply_all, checkpoint_safe_globals
    apply_all()
    before = list(torch.serialization.get_safe_globals())
    assert all(t in before for t in checkpoint_safe_globals())
    with allowed_checkpoint_types():
        pass
    # torch keeps them as a set: the order of its list is not theirs
    assert set(torch.serialization.get_safe_globals()) == set(before)
    torch.serialization.clear_safe_globals()
    try:
        with allowed_checkpoint_types():
            assert all(t in torch.serialization.get_safe_globals()
                       for t in checkpoint_safe_globals())
        assert not torch.serialization.get_safe_globals()
    finally:
        torch.serialization.add_safe_globals(before)
