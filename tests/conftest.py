"""Shared test pieces (tests/README.md). Light at import: under pytest -n 2
the controller process loads this file too and runs no test, so torch and
the stack are imported only where tests run (pytest_configure)."""
from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest


def pytest_configure(config):
    if getattr(config.option, 'numprocesses', None) and \
            not os.environ.get('PYTEST_XDIST_WORKER'):
        return  # the xdist controller: it only hands tests to the workers
    import torch

    from mmswift.compat import apply_all
    from mmswift.config_scope import register_config_scope
    if os.environ.get('PYTEST_XDIST_WORKER'):
        # pytest -n 2: one thread per worker (and per job it starts), so that two
        # workers share the cores instead of oversubscribing them
        os.environ['OMP_NUM_THREADS'] = os.environ['MKL_NUM_THREADS'] = '1'
        torch.set_num_threads(1)
    # The tests read the Runner checkpoints their jobs wrote (torch.load under
    # weights_only), as mmswift's tools and hooks do after apply_all(); and read
    # configs as the tools' load_config() does (mmswift:: paths, metafiles read once).
    apply_all()
    register_config_scope()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and BN statistic a random, non-trivial value."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return module


def load_tool(name: str):
    """``tools/NAME.py`` as a module, to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(
        f'mmswift_tool_{name}', os.path.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logged_scalars(work_dir: str) -> list:
    """The records of every ``scalars.json`` in a work dir, runs in order
    (a resumed run's records come after those of the run it continues)."""
    paths = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    return [json.loads(line) for path in paths for line in open(path)]


def free_port() -> int:
    """A TCP port nobody listens on, for a torchrun rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_log(work_dir: str) -> str:
    """The text of the log files a Runner wrote into ``work_dir`` (one per run,
    ``<timestamp>/<timestamp>.log``): what an in-process tool call logged."""
    return ''.join(open(p).read() for p in sorted(glob.glob(os.path.join(work_dir, '*', '*.log'))))


def wait_for_file(path: str, proc, log: str = None, timeout_s: float = 600) -> str:
    """Poll until the job ``proc`` writes ``path`` (a hook of
    tests/fault_injection.py, at the point it holds the job) and return its
    text. Fails if the job ends first, or after ``timeout_s`` (a hang, far
    beyond any load); ``log``: the job's output file, quoted on failure."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        tail = open(log).read()[-3000:] if log and os.path.exists(log) else ''
        assert proc.poll() is None or os.path.exists(path), \
            f'the job ended (exit {proc.returncode}) before writing {path}\n{tail}'
        assert time.monotonic() < deadline, f'no {path} after {timeout_s} s\n{tail}'
        time.sleep(0.01)
    return open(path).read()


def with_test_hooks(config: str, path: str, *hooks: str) -> str:
    """``config`` plus hooks of tests/fault_injection.py (config text, e.g.
    ``"dict(type='HoldAtIterHook', at=3, folder=...)"``), written to ``path``
    (a bare file name: beside ``config``)."""
    path = os.path.join(os.path.dirname(config), path)
    with open(path, 'w') as f:
        f.write(f'''_base_ = {config!r}
custom_imports = dict(imports=_base_.custom_imports.imports + ['tests.fault_injection'])
custom_hooks = _base_.custom_hooks + [{', '.join(hooks)}]
''')
    return path


def run_py(*args, env=None, timeout=600, cwd=REPO):
    """Run ``python args...`` and return the CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONPATH=REPO)
    full_env.update(env or {})
    return subprocess.run([PYTHON, *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def _manager_classes():
    """Every class with its own mmengine ``ManagerMixin`` instance registry
    (MMLogger, MessageHub, Visualizer and each subclass, DefaultScope...)."""
    from mmengine.utils import ManagerMixin
    found, todo = [], [ManagerMixin]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if '_instance_dict' in vars(c)]


@contextlib.contextmanager
def own_mmengine_instances():
    """Forget, on leaving, the mmengine instances created inside. A Runner
    takes its visualizer, logger and message hub by name ('visualizer' in
    every mmdet/mmseg config), so without this an in-process run writes its
    scalars and log into the work dir of an earlier Runner."""
    before = {cls: dict(vars(cls)['_instance_dict']) for cls in _manager_classes()}
    try:
        yield
    finally:
        for cls in _manager_classes():
            instances, kept = vars(cls)['_instance_dict'], before.get(cls, {})
            for name, obj in instances.items():
                if kept.get(name) is not obj:  # created inside: close its log file
                    for handler in getattr(obj, 'handlers', []):
                        if isinstance(handler, logging.FileHandler):
                            handler.close()
            instances.clear()
            instances.update(kept)


@pytest.fixture(autouse=True)
def fresh_mmengine_instances():
    """Every test forgets the mmengine instances it created (see
    :func:`own_mmengine_instances`)."""
    with own_mmengine_instances():
        yield


@pytest.fixture
def hf_swiftformer():
    """Factory of transformers' SwiftFormer with every weight random."""
    from mmswift.analysis.benchmark import random_reference

    def make(arch: str, classifier: bool = False, seed: int = 0):
        return randomize_(random_reference(arch, seed, classifier), seed).eval()

    return make


def write_config(path, base: str, body: str) -> str:
    """A config inheriting ``base`` (a repo-relative path), as a user writes one."""
    path.write_text(f'_base_ = {os.path.join(REPO, base)!r}\n' + body)
    return str(path)


DEMO_CONFIGS = {'det': 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py',
                'seg': 'configs/seg/fpn_swiftformer-xs_demo-scenes.py'}


@functools.lru_cache(maxsize=None)
def demo_pretrained() -> str:
    """An untrained SwiftFormer-XS classifier in the official layout, the
    stand-in for tools/pretrain_demo.py's output that the det demo config
    loads (written once per test session)."""
    import torch

    from mmswift.models import SwiftFormerClassifier
    from mmswift.models.pretrained import to_official
    torch.manual_seed(0)
    path = os.path.join(tempfile.mkdtemp(prefix='mmswift-pretrained-'), 'xs_official.pth')
    torch.save(to_official(SwiftFormerClassifier('xs', num_classes=6).state_dict()), path)
    return path


# For demo_config(..., pipeline=True): seg demo images resized to a fixed
# 64x64, no random augmentation (every batch the same size and content)
SEG_FIXED_64_PIPELINE = """
pipeline = [dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=False),
            dict(type='PackSegInputs')]
"""


def demo_config(tmp_path, task: str, gen: dict, body: str, batch_size: int = 2,
                name: str = None, pipeline: bool = False) -> str:
    """The det or seg demo config on a small generated set under ``tmp_path``
    (``gen``: generator arguments), with single-process loaders, then
    ``body``. ``pipeline``: the body defines a ``pipeline`` both loaders use.
    The det backbone loads :func:`demo_pretrained`."""
    root = str(tmp_path / ('shapes' if task == 'det' else 'scenes')) + '/'
    if task == 'det':
        body = f'pretrained = {demo_pretrained()!r}\n' \
               'model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))\n' + body
    data = f'data_root={root!r}, generate=gen' + (', pipeline=pipeline' if pipeline else '')
    evaluator = (f"val_evaluator = dict(ann_file={root!r} + 'annotations/instances_val.json')\n"
                 'test_evaluator = val_evaluator\n') if task == 'det' else ''
    return write_config(tmp_path / (name or f'{task}.py'), DEMO_CONFIGS[task], f'''
gen = {gen!r}
{body.strip()}
train_dataloader = dict(batch_size={batch_size}, num_workers=0, persistent_workers=False,
    dataset=dict({data}))
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict({data}))
test_dataloader = val_dataloader
{evaluator}''')


def tiny_det_config(tmp_path, max_epochs: int = 1) -> str:
    """The demo-shapes Mask R-CNN on 8 train / 4 val images of 128x128."""
    return demo_config(tmp_path, 'det', dict(num_train=8, num_val=4, size=128, seed=1), f'''
train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), logger=dict(interval=1))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
custom_hooks = [dict(type='mmswift.FeatureMapVisHook', interval=1, stage=0)]
''', batch_size=4, name='tiny_det.py')


def tiny_seg_config(tmp_path, max_iters: int = 2) -> str:
    """The demo-scenes Semantic FPN on 4 train / 3 val images of 96x96."""
    return demo_config(tmp_path, 'seg', dict(num_train=4, num_val=3, size=96, seed=1), f'''
train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3), logger=dict(interval=1))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
custom_hooks = [dict(type='mmswift.FeatureMapVisHook', interval=1, stage=0)]
''', name='tiny_seg.py')


def interrupted_run_config(folder, task: str) -> str:
    """The config that the resume and preemption tests interrupt: seg, 12
    iterations with a checkpoint every 4; det, 3 epochs of 4 iterations with
    a checkpoint every epoch. Logged at every iteration, window 1, so that
    the losses of two runs compare one by one."""
    logged = '''log_processor = dict(window_size=1)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
custom_hooks = _base_.robust_training_hooks
'''
    if task == 'seg':
        return demo_config(folder, 'seg', dict(num_train=8, num_val=2, size=64, seed=1), '''
train_cfg = dict(max_iters=12, val_interval=12)
default_hooks = dict(checkpoint=dict(interval=4, max_keep_ckpts=2), logger=dict(interval=1))
''' + logged)
    return demo_config(folder, 'det', dict(num_train=8, num_val=2, size=96, seed=1), '''
train_cfg = dict(max_epochs=3, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2), logger=dict(interval=1))
''' + logged)


@pytest.fixture(scope='session')
def uninterrupted(tmp_path_factory, worker_id):
    """``uninterrupted(task)``: (config, work dir) of one uninterrupted run
    of :func:`interrupted_run_config`, trained once per test session and
    shared by every xdist worker (a file lock): the reference that the
    resume and preemption tests compare their interrupted runs with.
    The tests interrupt that same config file, so both runs read the same
    data and settings; their hook configs go into their own tmp_path."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    root = base.parent if worker_id != 'master' else base  # shared by the workers
    made = {}

    def get(task: str):
        if task not in made:
            folder = root / f'uninterrupted-{task}'
            with FileLock(str(root / f'uninterrupted-{task}.lock')):
                work = str(folder / 'work')
                if not (folder / 'done').exists():
                    folder.mkdir(exist_ok=True)
                    config = interrupted_run_config(folder, task)
                    run = run_py('tools/train.py', config, '--work-dir', work)
                    assert run.returncode == 0, run.stderr[-3000:]
                    (folder / 'done').write_text(config)
                made[task] = ((folder / 'done').read_text(), work)
        return made[task]

    return get


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` are deselected on a machine without a CUDA GPU
    (rather than skipped), so that ``pytest`` and ``pytest -m "not slow"``
    report only what ran; and the slow tests run first."""
    import torch
    if not torch.cuda.is_available():
        cuda = [item for item in items if item.get_closest_marker('cuda')]
        if cuda:
            config.hook.pytest_deselected(items=cuda)
            items[:] = [item for item in items if not item.get_closest_marker('cuda')]
    # The long (slow) tests first: pytest -n 2 hands them out while the
    # workers are fresh, and the many short tests after them even out the
    # workers' ends (no worker left alone with a 60 s test at the end).
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)
