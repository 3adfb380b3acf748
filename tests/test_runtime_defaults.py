"""What a user of mmdet's and mmseg's tools expects of mmswift's: device
defaults, ``--tta``, FLOP counting per module, and which inferencers fold."""
import os

import pytest
import torch
from mmengine.config import Config

from mmswift.models import SwiftFormer

from .conftest import DEMO_CONFIGS, REPO, load_tool, tiny_seg_config

DET_DEMO = os.path.join(REPO, DEMO_CONFIGS['det'])
SEG_DEMO = os.path.join(REPO, DEMO_CONFIGS['seg'])


# --------------------------------------------------------------- devices
@pytest.mark.parametrize('cuda, expected', [(True, 'cuda:0'), (False, 'cpu')])
@pytest.mark.parametrize('tool, argv', [
    ('image_demo', ['img.jpg', 'cfg.py', 'ckpt.pth']),
    ('visualize_features', ['img.jpg', 'xs']),
])
def test_device_defaults_to_cuda_where_there_is_cuda(tool, argv, cuda, expected, monkeypatch,
                                                     capsys):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
    module = load_tool(tool)
    assert module.parse_args(argv).device == expected
    assert module.parse_args(argv + ['--device', 'cpu']).device == 'cpu'
    with pytest.raises(SystemExit):
        module.parse_args(['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert 'default: cuda:0 when CUDA is available, else cpu; on this machine: ' \
        f'{expected})' in text


# ------------------------------------------------------------------- tta
def _seg_checkpoint(config, path) -> str:
    from mmswift.apis import init_model
    torch.save({'meta': {}, 'state_dict': init_model(config).state_dict()}, path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('deploy', [True, False])
def test_tta_on_the_seg_demo_config_tests_the_tta_model(tmp_path, monkeypatch, deploy):
    """--tta: mmseg's SegTTAModel around the segmentor, the inherited ADE20K
    multi-scale + flip pipeline; the backbone inside folds unless --no-deploy."""
    from mmengine.runner import Runner
    config = tiny_seg_config(tmp_path)
    ckpt = _seg_checkpoint(config, tmp_path / 'seg.pth')
    seen = {}
    original = Runner.test

    def test(runner):
        seen['model'] = type(runner.model).__name__
        seen['inner'] = type(runner.model.module).__name__
        seen['pipeline'] = [t['type'] for t in runner.cfg.test_dataloader.dataset.pipeline]
        metrics = original(runner)
        seen['deploy'] = runner.model.module.backbone.deploy
        return metrics

    monkeypatch.setattr(Runner, 'test', test)
    argv = [config, ckpt, '--work-dir', str(tmp_path / 'work'), '--tta']
    rc = load_tool('test').main(argv + ([] if deploy else ['--no-deploy']))
    assert rc == 0
    assert seen['model'] == 'SegTTAModel' and seen['inner'] == 'EncoderDecoder'
    assert seen['pipeline'] == ['LoadImageFromFile', 'TestTimeAug']
    assert seen['deploy'] is deploy
    cfg = Config.fromfile(SEG_DEMO)  # the demo config's own TTA pipeline: 6 scales x 2 flips
    aug = cfg.tta_pipeline[-1]['transforms']
    assert len(aug[0]) == 6 and len(aug[1]) == 2


def test_tta_on_the_det_demo_config_names_the_config_and_why(tmp_path, capsys):
    rc = load_tool('test').main([DET_DEMO, str(tmp_path / 'any.pth'), '--tta'])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith(f'error: --tta: {DET_DEMO} is an instance segmentation model')
    assert "DetTTAModel merges boxes only" in err[-1]


def test_tta_for_a_box_only_det_config_is_mmdets_flip_tta():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(DET_DEMO)
    cfg.model.roi_head.mask_head = None
    cfg.model.roi_head.mask_roi_extractor = None
    load_tool('test').enable_tta(cfg, DET_DEMO)
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'MaskRCNN'
    pipeline = cfg.test_dataloader.dataset.pipeline
    assert pipeline[-1]['type'] == 'TestTimeAug'
    assert [t['prob'] for t in pipeline[-1]['transforms'][0]] == [1.0, 0.0]
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'DetTTAModel'
    assert type(model.module.backbone).__name__ == 'SwiftFormer'


# ------------------------------------------------------------- FLOPs
def _backbone():
    from .conftest import randomize_
    return randomize_(SwiftFormer('xs', out_indices=(0, 1, 2, 3)), seed=3).eval()


def test_flop_table_counts_every_module_with_the_same_outputs():
    """mmengine's get_model_complexity_info (what mmdet's get_flops.py
    runs): a per-module table, the attention and MLP modules counted, and
    the backbone's outputs are what they are unobserved."""
    from mmengine.analysis import FlopAnalyzer, get_model_complexity_info
    model = _backbone()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    info = get_model_complexity_info(model, inputs=(x, ), show_table=True, show_arch=False)
    rows = {line.split('|')[1].strip(): line.split('|')[3].strip()
            for line in info['out_table'].splitlines() if line.startswith('|')}
    assert info['flops'] > 0
    for name in ('stem', 'stages', 'stages.0.blocks', 'stages.1', 'stages.1.blocks',
                 'stages.3'):  # the table's depth (3); stage 0 shows as its blocks
        assert rows.get(name) not in (None, '', '0'), (name, info['out_table'])
    by_module = FlopAnalyzer(model, (x, )).by_module()
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            prefix = f'stages.{i}.blocks.{j}'
            parts = (['attn', 'attn.to_query', 'attn.to_key', 'attn.proj', 'attn.final',
                      'linear.fc1', 'linear.fc2', 'local_representation']
                     if hasattr(block, 'attn') else ['pwconv1', 'pwconv2', 'dwconv'])
            for part in parts:
                assert by_module[f'{prefix}.{part}'] > 0, f'{prefix}.{part}'
    with torch.no_grad():
        after = model(x)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hooks_on_submodules_see_every_call_and_outputs_stay_within_rounding():
    """Hook-based counters (mmcv's get_model_complexity_info, ptflops,
    feature extractors) hook the leaf modules, which the eval fast forms
    bypass: observed blocks run their plain forward()."""
    from mmcv.cnn import get_model_complexity_info
    model = _backbone()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fast = model(x)
    plain_flops, _ = get_model_complexity_info(
        SwiftFormer('xs', kernels='plain').eval(), (3, 64, 64), print_per_layer_stat=False,
        as_strings=False)
    flops, _ = get_model_complexity_info(model, (3, 64, 64), print_per_layer_stat=False,
                                         as_strings=False)
    assert flops == plain_flops  # the fast forms counted nothing of what they bypass
    calls = []
    fc1 = model.stages[2].blocks[-1].linear.fc1
    handle = fc1.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    with torch.no_grad():
        observed = model(x)
    handle.remove()
    assert len(calls) == 1
    for a, b in zip(fast, observed):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_global_module_hook_is_observation_too():
    from torch.nn.modules.module import register_module_forward_hook
    model = _backbone()
    seen = set()
    handle = register_module_forward_hook(lambda m, args, out: seen.add(m))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    assert model.stages[0].blocks[0].pwconv1 in seen
    assert model.stages[3].blocks[-1].linear.fc2 in seen
    assert model.stages[3].blocks[-1].attn in seen


def test_unobserved_blocks_still_take_the_fast_forms(monkeypatch):
    """The check steps aside only when someone watches."""
    from mmswift.models import kernels
    calls = []
    original = kernels.blocked_mlp_forward
    monkeypatch.setattr(kernels, 'blocked_mlp_forward',
                        lambda *a: calls.append(1) or original(*a))
    with torch.no_grad():
        _backbone()(torch.randn(1, 3, 64, 64))
    # one blocked MLP per ConvEncoder, two per SwiftFormerBlock (its local
    # representation and its MLP)
    assert len(calls) == sum(1 + hasattr(b, 'attn') for s in _backbone().stages for b in s.blocks)


# ----------------------------------------------------------- inferencers
@pytest.mark.slow  # builds four inferencers
def test_which_inferencers_fold_as_the_readme_says():
    """README: build_inferencer folds by default; mmseg's MMSegInferencer
    built directly runs the training form until switch_backbone_to_deploy."""
    import warnings

    from mmseg.apis import MMSegInferencer

    from mmswift.apis import build_inferencer, switch_backbone_to_deploy
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        ours = build_inferencer(SEG_DEMO, device='cpu')
        theirs = MMSegInferencer(model=SEG_DEMO, device='cpu')
        kept = build_inferencer(SEG_DEMO, device='cpu', deploy=False)
    assert ours.model.backbone.deploy
    assert not theirs.model.backbone.deploy and not kept.model.backbone.deploy
    assert switch_backbone_to_deploy(theirs.model) and theirs.model.backbone.deploy


def test_tta_still_checks_the_checkpoint_against_the_variant(tmp_path, capsys):
    """--tta wraps the model config; the checkpoint's variant is still
    checked against the backbone inside."""
    config = tiny_seg_config(tmp_path)
    ckpt = _seg_checkpoint(config, tmp_path / 'xs.pth')
    l1 = str(tmp_path / 'l1.py')
    with open(l1, 'w') as f:
        f.write(f"_base_ = {config!r}\nmodel = dict(backbone=dict(arch='l1'))\n")
    rc = load_tool('test').main([l1, ckpt, '--tta'])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and 'SwiftFormer-XS' in line and "arch='l1'" in line
