"""mmswift as a plugin installed into an OpenMMLab environment: version ranges,
configs in the package (``mmswift::``), metafiles and mim."""
import glob
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from unittest import mock

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from .conftest import PYTHON, REPO, run_py, tiny_det_config, tiny_seg_config

STACK = ('mmcv', 'mmengine', 'mmdet', 'mmsegmentation')
MIM = os.path.join(os.path.dirname(PYTHON), 'mim')


def _setup_kwargs() -> dict:
    """setup.py's arguments, from the file as it is now (not from an install)."""
    with mock.patch('setuptools.setup') as setup:
        runpy.run_path(os.path.join(REPO, 'setup.py'), run_name='setup_under_test')
    return setup.call_args.kwargs


def _pins(path: str) -> dict:
    reqs = [Requirement(ln.split('#')[0].strip()) for ln in open(path)
            if ln.split('#')[0].strip()]
    return {r.name: r for r in reqs}


def test_install_requires_are_ranges_that_the_tested_set_satisfies():
    reqs = {r.name: r for r in map(Requirement, _setup_kwargs()['install_requires'])}
    assert set(STACK) <= set(reqs)
    for req in reqs.values():
        assert all(s.operator not in ('==', '===', '~=') for s in req.specifier), str(req)
    for name in STACK:  # bounded on both sides: a major release is not assumed to work
        ops = {s.operator for s in reqs[name].specifier}
        assert '>=' in ops and '<' in ops, str(reqs[name])
    tested = _pins(os.path.join(REPO, 'requirements', 'tested.txt'))
    for name in STACK:
        (pin,) = tested[name].specifier
        assert pin.operator == '=='
        assert reqs[name].specifier.contains(Version(pin.version), prereleases=True), name


def test_install_sh_installs_the_tested_set():
    """tools/install.sh (README, CI) keeps the exact versions: runtime.txt's ranges
    under tested.txt's constraints."""
    script = open(os.path.join(REPO, 'tools', 'install.sh')).read()
    (line,) = [ln for ln in script.replace('\\\n', ' ').splitlines()
               if 'requirements/runtime.txt' in ln and not ln.lstrip().startswith('#')]
    assert '-c "$ROOT/requirements/tested.txt"' in line
    tested = _pins(os.path.join(REPO, 'requirements', 'tested.txt'))
    for name in (*STACK, 'mmpretrain', 'openmim'):
        assert str(tested[name].specifier).startswith('=='), name


def test_mim_folder_points_at_the_checkout():
    """setup.py links configs/, tools/ and model-index.yml into mmswift/.mim."""
    import mmswift
    mim = os.path.join(os.path.dirname(mmswift.__file__), '.mim')
    for name in ('configs', 'tools', 'model-index.yml'):
        assert os.path.realpath(os.path.join(mim, name)) == os.path.join(REPO, name)
    assert os.path.isfile(os.path.join(mim, 'tools', 'train.py'))


@pytest.mark.parametrize('base, scope, backbone', [
    ('mmswift::det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py', 'mmdet', 'l1'),
    ('mmswift::seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py', 'mmseg', 'xs'),
])
def test_a_users_config_inherits_mmswift_scope(tmp_path, base, scope, backbone):
    from mmengine.config import Config

    from mmswift.config_scope import register_config_scope
    register_config_scope()
    cfg_file = tmp_path / 'my_config.py'
    cfg_file.write_text(f'_base_ = {base!r}\n'
                        'train_dataloader = dict(batch_size=1)\n')
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == scope
    assert cfg.model.backbone.type == 'mmswift.SwiftFormer'
    assert cfg.model.backbone.arch == backbone
    assert cfg.train_dataloader.batch_size == 1
    assert 'mmswift' in cfg.custom_imports.imports


@pytest.mark.slow  # a clean interpreter per case
def test_mmswift_tools_read_a_config_that_inherits_mmswift_scope(tmp_path):
    """In a clean interpreter: the tools' config loader registers the scope."""
    cfg_file = tmp_path / 'my_config.py'
    cfg_file.write_text("_base_ = 'mmswift::seg/fpn_swiftformer-s_8xb4-40k_ade20k-512x512.py'\n")
    proc = run_py('-c', 'from mmswift.engine.launch import load_config; '
                  f'print(load_config({str(cfg_file)!r}).model.backbone.arch)')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 's'


def _metafiles():
    index = yaml.safe_load(open(os.path.join(REPO, 'model-index.yml')))
    return {p: yaml.safe_load(open(os.path.join(REPO, p))) for p in index['Import']}


def test_model_index_lists_every_config_honestly():
    metas = _metafiles()
    assert set(metas) == {'configs/det/metafile.yml', 'configs/seg/metafile.yml'}
    listed = {}
    for path, meta in metas.items():
        task_dir = os.path.dirname(path)
        collections = {c['Name'] for c in meta['Collections']}
        for m in meta['Models']:
            assert os.path.dirname(m['Config']) == task_dir
            assert m['Name'] == os.path.splitext(os.path.basename(m['Config']))[0]
            assert m['In Collection'] in collections
            listed[m['Config']] = m
    configs = {os.path.relpath(p, REPO) for d in ('det', 'seg')
               for p in glob.glob(os.path.join(REPO, 'configs', d, '*.py'))
               if '_demo-' not in os.path.basename(p)}
    assert set(listed) == configs and len(configs) == 9
    assert all(os.path.isfile(os.path.join(REPO, c)) for c in listed)

    def metrics(results):
        results = results if isinstance(results, list) else [results]
        return {(r['Task'], r['Dataset'], k): v for r in results for k, v in r['Metrics'].items()}

    paper = {}
    for config, m in listed.items():
        # nothing was measured with these configs yet and no weights are published:
        # the paper's numbers may appear only as `Paper Results`, never as `Results`
        assert 'Weights' not in m and 'Training log' not in m, config
        measured = metrics(m.get('Results', []))
        claimed = metrics(m.get('Paper Results', []))
        assert not set(measured.items()) & set(claimed.items()), config
        paper[config] = claimed
        if config.startswith('configs/seg/'):
            assert m['Metadata']['Training Data'] == 'ADE20K'
            assert set(k for *_, k in claimed) <= {'mIoU'}
            assert all(t == 'Semantic Segmentation' and d == 'ADE20K' for t, d, _ in claimed)
        else:
            assert set(k for *_, k in claimed) <= {'box AP', 'mask AP'}
    assert paper['configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py'] == {
        ('Object Detection', 'COCO', 'box AP'): 41.2,
        ('Instance Segmentation', 'COCO', 'mask AP'): 38.1}
    assert paper['configs/seg/fpn_swiftformer-l3_8xb4-40k_ade20k-512x512.py'] == {
        ('Semantic Segmentation', 'ADE20K', 'mIoU'): 43.9}


def _run(cmd, env=None, cwd=REPO, timeout=300):
    full_env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', **(env or {}))
    return subprocess.run(cmd, cwd=cwd, env=full_env, text=True, capture_output=True,
                          timeout=timeout)


@pytest.mark.slow
def test_pip_leaves_a_satisfied_environment_untouched(tmp_path):
    """pip's own report: installing the checkout into this environment (which
    holds the tested set) would install mmswift and nothing else."""
    report = tmp_path / 'report.json'
    proc = _run([PYTHON, '-m', 'pip', 'install', '--dry-run', '--no-index',
                 '--no-build-isolation', '--disable-pip-version-check',
                 '--report', str(report), '-e', REPO])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [i['metadata']['name'] for i in json.load(open(report))['install']]
    assert names == ['mmswift']


@pytest.mark.slow
def test_a_regular_install_ships_mim_files_and_mim_search_lists_the_models(tmp_path):
    """A non-editable install (wheel) carries copies of configs/, tools/ and
    model-index.yml in mmswift/.mim; mim finds them there."""
    src = tmp_path / 'src'
    skip = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim', '*.egg-info')
    src.mkdir()
    for name in ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md', 'LICENSE',
                 'model-index.yml'):
        shutil.copy(os.path.join(REPO, name), src / name)
    for name in ('mmswift', 'configs', 'tools', 'requirements'):
        shutil.copytree(os.path.join(REPO, name), src / name, ignore=skip)
    target = tmp_path / 'site'
    proc = _run([PYTHON, '-m', 'pip', 'install', '-q', '--no-deps', '--no-build-isolation',
                 '--disable-pip-version-check', '--target', str(target), str(src)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mim = target / 'mmswift' / '.mim'
    for rel in ('model-index.yml', 'configs/det/metafile.yml', 'configs/seg/metafile.yml',
                'configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py',
                'configs/_base_/robust_training.py', 'tools/train.py', 'tools/test.py'):
        assert (mim / rel).is_file() and not (mim / rel).is_symlink(), rel
    proc = _run([MIM, 'search', 'mmswift'], env={'PYTHONPATH': str(target)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = set(re.findall(r'config id: (\S+)', proc.stdout))
    expected = {os.path.splitext(os.path.basename(p))[0] for d in ('det', 'seg')
                for p in glob.glob(os.path.join(REPO, 'configs', d, '*.py'))
                if '_demo-' not in p}
    assert len(expected) == 9
    assert ids == expected


@pytest.mark.slow
@pytest.mark.parametrize('task', ['seg', 'det'])
def test_mim_train_and_test_run_mmswift_tools(task, tmp_path):
    """``mim train mmswift`` / ``mim test mmswift`` run .mim/tools/train.py and
    test.py: a config name is found in the package (mim's lookup is the same
    for every task folder: checked once, with the seg demo config), and a
    tiny seg (det) run trains and tests, with mmseg's mIoU (mmdet's COCO)
    table. mim 0.3.9 finds a package from its distribution's location, which
    for an editable install is site-packages: PYTHONPATH=<checkout> (where the
    editable build leaves mmswift.egg-info) points it at the checkout."""
    env = {'PYTHONPATH': REPO}
    if task == 'seg':
        name = 'fpn_swiftformer-xs_demo-scenes.py'
        proc = _run([MIM, 'train', 'mmswift', name, '--', '-h'], env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert os.path.join(REPO, 'configs', task, name) in proc.stdout
        assert os.path.join('mmswift', '.mim', 'tools', 'train.py') in proc.stdout
        assert 'usage: train.py' in proc.stdout
        config, ckpt_name, metric = tiny_seg_config(tmp_path, max_iters=1), 'iter_1.pth', 'mIoU'
    else:
        config, ckpt_name, metric = tiny_det_config(tmp_path), 'epoch_1.pth', 'coco/segm_mAP'
    work = tmp_path / 'work'
    proc = _run([MIM, 'train', 'mmswift', config, '--work-dir', str(work),
                 '--cfg-options', 'train_cfg.val_begin=1000'], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = work / ckpt_name
    assert ckpt.is_file()
    proc = _run([MIM, 'test', 'mmswift', config, '--checkpoint', str(ckpt),
                 '--work-dir', str(tmp_path / 'test')], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert os.path.join('mmswift', '.mim', 'tools', 'test.py') in proc.stdout
    assert metric in proc.stdout + proc.stderr


def test_a_config_read_again_parses_no_metafile_and_reads_the_same(monkeypatch):
    """mmengine parses every metafile of mmdet (mmseg) for each ``mmdet::``
    base of a config; after register_config_scope() a process does that
    once per base, and the configs read are those of mmengine's own lookup."""
    from mmengine.config import Config
    from mmengine.config import utils as config_utils

    from mmswift.config_scope import register_config_scope
    register_config_scope()
    path = os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py')
    remembered = Config.fromfile(path).to_dict()
    parsed = []
    real_load = config_utils.load
    monkeypatch.setattr(config_utils, 'load', lambda f, *a, **k: parsed.append(f) or
                        real_load(f, *a, **k))
    assert Config.fromfile(path).to_dict() == remembered and parsed == []
    # mmengine's own lookup (the function register_config_scope wrapped)
    monkeypatch.setattr(config_utils, '_get_cfg_metainfo',
                        config_utils._get_cfg_metainfo.__wrapped__)
    assert Config.fromfile(path).to_dict() == remembered
    assert len(parsed) > 50  # it did parse the metafiles


def test_scope_finds_the_package_of_an_editable_install(monkeypatch):
    """mmengine 0.10 answers site-packages/mmswift for a PEP 660 editable install
    (no such folder): the mmswift scope answers with the imported package's folder,
    and leaves every other package's answer alone."""
    import mmswift
    from mmengine.config import config as config_module

    from mmswift.config_scope import register_config_scope
    site = os.path.join(os.path.dirname(os.path.dirname(shutil.__file__)), 'no-such-site')
    monkeypatch.setattr(config_module, 'get_installed_path',
                        lambda package: os.path.join(site, package))
    register_config_scope()
    lookup = config_module.get_installed_path
    assert lookup('mmswift') == os.path.dirname(os.path.abspath(mmswift.__file__))
    assert lookup('mmdet') == os.path.join(site, 'mmdet')
