"""Loading weights of every format, checked against transformers' SwiftFormer."""
import re

import pytest
import torch
from mmengine.logging import MMLogger

from mmswift.models import SwiftFormer
from mmswift.models.pretrained import CheckpointError, load_pretrained

from .conftest import run_py
from .test_fidelity import official_shapes

ARCHS = ['xs', 's', 'l1', 'l3']


def _hf_stage_outputs(hf, x):
    """transformers' hidden_states: embedding, then each network entry; the
    stage outputs are entries 1, 3, 5, 7."""
    base = getattr(hf, 'swiftformer', hf)
    with torch.no_grad():
        hs = base(x, output_hidden_states=True).hidden_states
    return [hs[i] for i in (1, 3, 5, 7)]


def _official_from_hf(sd):
    """The official repository's key layout (models/swiftformer.py), written
    from transformers' conversion rules read backwards."""
    out = {}
    for k, v in sd.items():
        k = k.replace('swiftformer.', '', 1)
        k = k.replace('patch_embed.patch_embedding.', 'patch_embed.')
        k = k.replace('.depth_wise_conv.', '.dwconv.').replace('.point_wise_conv', '.pwconv')
        k = k.replace('.attn.proj.', '.attn.Proj.')
        k = re.sub(r'^encoder\.network\.(\d+)\.blocks\.', r'network.\1.', k)
        k = k.replace('encoder.network.', 'network.')
        out[k] = v
    return {'model': out}


def _timm_from_official(ckpt):
    """timm's layout, as timm makes it from the official checkpoint: the rules
    of ``checkpoint_filter_fn`` in timm/models/swiftformer.py (timm's SwiftFormer
    modules: ``stem`` a Sequential, ``stages.i.downsample``/``stages.i.blocks.j``,
    ``LayerScale2d.gamma``, ``head_dist``)."""
    out = {}
    for k, v in ckpt['model'].items():
        k = k.replace('patch_embed.', 'stem.')
        k = k.replace('dist_head.', 'head_dist.')
        k = k.replace('attn.Proj.', 'attn.proj.')
        k = k.replace('.layer_scale_1', '.layer_scale_1.gamma')
        k = k.replace('.layer_scale_2', '.layer_scale_2.gamma')
        k = re.sub(r'\.layer_scale(?=$|\.)', '.layer_scale.gamma', k)
        m = re.match(r'^network\.(\d+)\.(.*)', k)
        if m:
            n, rest = int(m.group(1)), m.group(2)
            k = (f'stages.{n // 2}.blocks.{rest}' if n % 2 == 0
                 else f'stages.{n // 2 + 1}.downsample.{rest}')
        out[k] = v
    return out


@pytest.mark.parametrize('arch', ARCHS)
def test_parity_with_transformers_through_init_cfg(arch, hf_swiftformer, tmp_path):
    """Random weights saved by transformers, loaded via init_cfg, same features."""
    hf = hf_swiftformer(arch)
    hf.save_pretrained(tmp_path / 'hf')  # model.safetensors
    model = SwiftFormer(arch, out_norm_cfg=None, attn_norm='softmax',
                        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'hf')))
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 96, 72)
    with torch.no_grad():
        ours = model(x)
    for a, b in zip(ours, _hf_stage_outputs(hf, x)):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_transformers_checkpoint_refuses_the_l2_form(hf_swiftformer, tmp_path):
    """transformers' port is the softmax form by definition: loading it into
    the default l2 backbone would compute another function than was trained."""
    path = _save(tmp_path / 'pytorch_model.bin', hf_swiftformer('xs').state_dict())
    with pytest.raises(CheckpointError) as e:
        load_pretrained(SwiftFormer('xs', out_norm_cfg=None), path)
    assert str(e.value) == (
        f"checkpoint {path} was trained with attn_norm='softmax' (its layout (huggingface)) but "
        f"the backbone is built with attn_norm='l2'; set model.backbone.attn_norm='softmax'")
    load_pretrained(SwiftFormer('xs', out_norm_cfg=None, attn_norm='softmax'), path)


@pytest.mark.parametrize('fmt', ['hf_classifier_bin', 'hf_safetensors', 'official', 'timm', 'mmswift'])
def test_every_format_loads_the_same_weights(fmt, hf_swiftformer, tmp_path):
    from safetensors.torch import save_file
    hf = hf_swiftformer('xs', classifier=True, seed=3)
    hf_sd = hf.state_dict()
    reference = SwiftFormer('xs', out_norm_cfg=None, attn_norm='softmax').eval()
    load_pretrained(reference, _save(tmp_path / 'ref.bin', hf_sd))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = _hf_stage_outputs(hf, x)

    if fmt == 'hf_classifier_bin':
        path = _save(tmp_path / 'pytorch_model.bin', hf_sd)
    elif fmt == 'hf_safetensors':
        path = str(tmp_path / 'model.safetensors')
        save_file({k: v.contiguous() for k, v in hf_sd.items()}, path)
    elif fmt == 'official':
        path = _save(tmp_path / 'swiftformer_xs.pth', _official_from_hf(hf_sd))
    elif fmt == 'timm':
        sd = _timm_from_official(_official_from_hf(hf_sd))
        # the same names as timm's modules, written independently in test_fidelity
        backbone = {k for k in official_shapes('xs') if not re.match(r'norm\d\.', k)}
        assert {k for k in sd if not k.startswith(('norm.', 'head.', 'head_dist.'))} \
            == backbone
        path = _save(tmp_path / 'swiftformer_xs.timm.pth', sd)
    else:  # an mmswift Mask R-CNN-like checkpoint, saved by mmengine
        sd = {f'backbone.{k}': v for k, v in reference.state_dict().items()}
        sd['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 48, 1, 1)
        path = _save(tmp_path / 'epoch_12.pth', {'meta': {'epoch': 12}, 'state_dict': sd})

    model = SwiftFormer('xs', out_norm_cfg=None, attn_norm='softmax').eval()
    report = load_pretrained(model, path)
    assert report['missing'] == []
    # every tensor but the attention-form buffers, which only mmswift's own files hold
    assert {k for k in model.state_dict() if k not in report['loaded']} <= \
        ({f'stages.{i}.blocks.{n - 1}.attn.attn_norm_code' for i, n in enumerate(model.layers)}
         if fmt != 'mmswift' else set())
    with torch.no_grad():
        for a, b in zip(model(x), expected):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    if fmt in ('hf_classifier_bin', 'official'):
        assert any('head' in k for k in report['dropped'])
        assert any(k.endswith('dist_head.weight') for k in report['dropped'])


def _save(path, obj):
    torch.save(obj, path)
    return str(path)


def test_load_logs_loaded_missing_and_dropped(hf_swiftformer, tmp_path, capsys):
    hf = hf_swiftformer('xs', classifier=True)
    path = _save(tmp_path / 'cls.bin', hf.state_dict())
    logger = MMLogger.get_instance('test_load_logs', log_level='INFO')
    # BN output norms: not in an ImageNet checkpoint
    model = SwiftFormer('xs', out_indices=(0, 3), attn_norm='softmax')
    report = load_pretrained(model, path, logger=logger)
    assert sorted(k.split('.')[0] for k in report['missing']) == ['norm0'] * 5 + ['norm3'] * 5
    assert set(report['dropped']) == {'norm.weight', 'norm.bias', 'norm.running_mean',
                                      'norm.running_var', 'norm.num_batches_tracked',
                                      'head.weight', 'head.bias', 'dist_head.weight',
                                      'dist_head.bias'}
    out = capsys.readouterr().out
    assert 'huggingface format), every backbone tensor it holds' in out
    assert "output norms ['norm0', 'norm3'] (10 tensors)" in out
    assert 'dropped from checkpoint' in out and 'dist_head.weight' in out
    # a checkpoint short of a backbone tensor: named as missing
    sd = hf.state_dict()
    del sd['swiftformer.encoder.network.0.blocks.0.point_wise_conv1.weight']
    load_pretrained(SwiftFormer('xs', out_indices=(3,), attn_norm='softmax'),
                    _save(tmp_path / 'cut.bin', sd),
                    logger=logger)
    out = capsys.readouterr().out
    assert 'missing in checkpoint, left as initialised' in out
    assert "'stages.0.blocks.0.pwconv1.weight'" in out


def test_wrong_variant_names_both_variants(hf_swiftformer, tmp_path):
    path = _save(tmp_path / 'l1.bin', hf_swiftformer('l1').state_dict())
    model = SwiftFormer('xs')
    with pytest.raises(CheckpointError) as e:
        load_pretrained(model, path)
    msg = str(e.value)
    assert 'SwiftFormer-L1' in msg and "arch='xs'" in msg and 'l1.bin' in msg
    assert 'size mismatch' not in msg and '\n' not in msg


def test_missing_truncated_and_foreign_checkpoints(hf_swiftformer, tmp_path):
    model = SwiftFormer('xs')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_pretrained(model, str(tmp_path / 'nope.pth'))

    good = _save(tmp_path / 'good.bin', hf_swiftformer('xs').state_dict())
    data = open(good, 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated.pth.*truncated'):
        load_pretrained(model, str(truncated))

    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    with pytest.raises(CheckpointError, match='notes.pth'):
        load_pretrained(model, str(text))

    resnet = _save(tmp_path / 'resnet.pth', {'conv1.weight': torch.zeros(64, 3, 7, 7)})
    with pytest.raises(CheckpointError, match='not a SwiftFormer checkpoint'):
        load_pretrained(model, resnet)


def test_missing_path_through_init_cfg_is_one_line(tmp_path):
    model = SwiftFormer('xs', init_cfg=dict(type='Pretrained',
                                            checkpoint='checkpoints/swiftformer_xs.pth'))
    with pytest.raises(FileNotFoundError) as e:
        model.init_weights()
    assert 'checkpoints/swiftformer_xs.pth' in str(e.value)
    assert '--cfg-options model.backbone.init_cfg.checkpoint=' in str(e.value)
    assert '\n' not in str(e.value)


@pytest.mark.slow
def test_convert_tool_writes_a_loadable_backbone(hf_swiftformer, tmp_path):
    hf = hf_swiftformer('s', classifier=True)
    src = _save(tmp_path / 'swiftformer_s_hf.bin', hf.state_dict())
    dst = str(tmp_path / 'out' / 'swiftformer_s.pth')
    proc = run_py('tools/convert_checkpoint.py', src, dst)
    assert proc.returncode == 0, proc.stderr
    assert 'SwiftFormer-S' in proc.stdout
    ckpt = torch.load(dst)
    assert ckpt['meta']['arch'] == 's'
    assert ckpt['meta']['attn_norm'] == 'softmax'  # transformers' port, by definition
    with pytest.raises(CheckpointError, match="trained with attn_norm='softmax'"):
        load_pretrained(SwiftFormer('s', out_norm_cfg=None), dst)
    assert not any(k.startswith(('head', 'dist_head', 'norm.')) for k in ckpt['state_dict'])
    model = SwiftFormer('s', out_norm_cfg=None, attn_norm='softmax').eval()
    report = load_pretrained(model, dst)
    assert report['missing'] == [] and report['format'] == 'timm'
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[3], _hf_stage_outputs(hf, x)[3], rtol=0, atol=1e-5)

    wrong = run_py('tools/convert_checkpoint.py', src, dst, '--arch', 'l3')
    assert wrong.returncode == 2
    assert 'SwiftFormer-S' in wrong.stderr and "arch='l3'" in wrong.stderr
    missing = run_py('tools/convert_checkpoint.py', str(tmp_path / 'missing.pth'), dst)
    assert missing.returncode == 2 and 'missing.pth' in missing.stderr


# ------------------------------------------------ a checkpoint's identity
def _trained(arch='xs', seed=0, **kwargs):
    from .conftest import randomize_
    return randomize_(SwiftFormer(arch, **kwargs), seed=seed).eval()


@pytest.mark.parametrize('door', ['init_cfg', 'load_state_dict', 'mmengine'])
def test_the_attention_form_travels_with_the_weights(door, tmp_path):
    """A softmax-form backbone's weights into an l2 backbone stop with one
    line naming both forms and the fix, through every door."""
    from mmengine.runner import load_checkpoint
    src = _trained(attn_norm='softmax')
    path = _save(tmp_path / 'detector.pth', {'state_dict': {f'backbone.{k}': v for k, v in
                                                            src.state_dict().items()}})
    model = SwiftFormer('xs')
    with pytest.raises(CheckpointError) as e:
        if door == 'init_cfg':
            model.init_cfg = dict(type='Pretrained', checkpoint=path, prefix='backbone.')
            model.init_weights()
        elif door == 'load_state_dict':
            model.load_state_dict(src.state_dict())
        else:
            net = torch.nn.Module()
            net.backbone = model
            load_checkpoint(net, path, logger='silent')
    assert "attn_norm='softmax'" in str(e.value) and "attn_norm='l2'" in str(e.value)
    assert '\n' not in str(e.value)
    # the same form loads, and a checkpoint that does not record it too
    SwiftFormer('xs', attn_norm='softmax').load_state_dict(src.state_dict())
    old = {k: v for k, v in src.state_dict().items() if not k.endswith('attn_norm_code')}
    SwiftFormer('xs').load_state_dict(old)


def test_meta_attn_norm_of_the_convert_tool_is_read(tmp_path):
    sd = _trained().state_dict()
    sd = {k: v for k, v in sd.items() if not k.endswith('attn_norm_code')}
    path = _save(tmp_path / 'conv.pth', {'state_dict': sd, 'meta': {'attn_norm': 'softmax'}})
    with pytest.raises(CheckpointError, match=r"\(its meta\['attn_norm'\]\)"):
        load_pretrained(SwiftFormer('xs'), path)
    load_pretrained(SwiftFormer('xs', attn_norm='softmax'), path)


@pytest.mark.parametrize('door', ['init_cfg', 'mmengine'])
def test_a_folded_state_dict_is_named_as_such(door, tmp_path):
    """A deploy-form state dict lacks every BatchNorm and layer scale of the
    blocks; loaded non-strictly it would leave them as initialised."""
    from mmengine.runner import load_checkpoint
    folded = _trained().switch_to_deploy().state_dict()
    path = _save(tmp_path / 'deployed.pth', {f'backbone.{k}': v for k, v in folded.items()})
    model = SwiftFormer('xs')
    with pytest.raises(CheckpointError, match='deploy-form \\(folded\\) state dict'):
        if door == 'init_cfg':
            model.init_cfg = dict(type='Pretrained', checkpoint=path)
            model.init_weights()
        else:
            net = torch.nn.Module()
            net.backbone = model
            load_checkpoint(net, path, logger='silent')
    # into a deployed backbone it loads, and a training-form one is refused there
    SwiftFormer('xs').eval().switch_to_deploy().load_state_dict(folded)
    with pytest.raises(CheckpointError, match='training-form state dict'):
        SwiftFormer('xs').eval().switch_to_deploy().load_state_dict(_trained().state_dict())


def test_official_detection_branch_prefixes_and_ddp_keys(tmp_path):
    """The official dense-prediction branch names its output norms
    ``norm0/2/4/6`` (one per network entry with a stage); DDP checkpoints
    prefix ``module.``; ``init_cfg``'s ``prefix`` picks a sub-model."""
    from mmswift.models.pretrained import to_official
    src = _trained(seed=4)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = src(x)
    official = to_official({f'backbone.{k}': v for k, v in src.state_dict().items()})['model']
    branch = {}
    for k, v in official.items():
        # stage i's output norm is norm{2i} there (to_official writes the
        # classifier's: norm0-2 and, for the last stage, norm)
        k = re.sub(r'^norm\.', 'norm3.', k)
        m = re.match(r'^norm(\d)\.(.*)$', k)
        branch[f'norm{2 * int(m.group(1))}.{m.group(2)}' if m else k] = v
    assert {k.split('.')[0] for k in branch if k.startswith('norm')} == \
        {'norm0', 'norm2', 'norm4', 'norm6'}
    cases = {'branch': ({'model': branch}, None),
             'ddp': ({'state_dict': {f'module.backbone.{k}': v
                                     for k, v in src.state_dict().items()}}, None),
             'prefix': ({'state_dict': {**{f'teacher.{k}': torch.zeros_like(v)
                                           for k, v in src.state_dict().items()},
                                        **{f'student.{k}': v
                                           for k, v in src.state_dict().items()}}}, 'student.')}
    for name, (ckpt, prefix) in cases.items():
        path = _save(tmp_path / f'{name}.pth', ckpt)
        model = SwiftFormer('xs').eval()
        report = load_pretrained(model, path, prefix=prefix)
        assert report['missing'] == [], name
        # the config's door: init_cfg passes its prefix on
        through_cfg = SwiftFormer('xs', init_cfg=dict(type='Pretrained', checkpoint=path,
                                                      prefix=prefix))
        through_cfg.init_weights()
        through_cfg.eval()
        with torch.no_grad():
            for m in (model, through_cfg):
                for a, b in zip(m(x), expected):
                    torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
