"""Where the additive attention looks (issue 28): the per-token weights of
each stage's global query, against the paper's equations, in every form of
the backbone, through the tool and the training hook."""
import copy
import json
import os

import cv2
import numpy as np
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmswift.models import SwiftFormer
from mmswift.visualization import (SOFTMAX_MESSAGE, attention_in_mask_ratio, attention_maps,
                                   build_feature_extractor)

from .conftest import REPO, load_tool, run_py, tiny_seg_config

vis_tool = load_tool('visualize_features')


def randomised(backbone: SwiftFormer, seed: int = 0) -> SwiftFormer:
    """Non-trivial BN statistics and layer scales, so that folding them in
    the deploy form is a real change."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            if isinstance(getattr(m, 'gamma', None), torch.nn.Parameter):  # layer scales
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) + 0.5)
    return backbone


def paper_weights(backbone: SwiftFormer, images: torch.Tensor, stage: int):
    """Written from the paper's equations, on B x N x C tokens: the input of
    the stage's last block's attention, its token weights
    ``a = s / ||s||_2`` (l2) or ``softmax`` over the size-1 axis, with
    ``s_t = (q_t . w_g) / sqrt(C)`` and ``q_t = (W_q x_t + b_q) / ||.||``;
    and the attention's output recomputed from them."""
    with torch.no_grad():
        x = backbone.stem(images)
        for i in range(stage + 1):
            st = backbone.stages[i]
            x = st.downsample(x)
            for blk in (st.blocks if i < stage else st.blocks[:-1]):
                x = blk(x)
        block = backbone.stages[stage].blocks[-1]
        x = block.local_representation(x)
        attn = block.attn
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B x N x C
        q = tokens @ attn.to_query.weight.T + attn.to_query.bias
        q = q / q.norm(dim=-1, keepdim=True)
        k = tokens @ attn.to_key.weight.T + attn.to_key.bias
        k = k / k.norm(dim=-1, keepdim=True)
        s = (q @ attn.w_g) / c ** 0.5  # B x N x 1
        if attn.attn_norm == 'l2':
            a = s / s.norm(dim=1, keepdim=True)  # over the N tokens
        else:
            a = torch.softmax(s, dim=-1)
        g = (a * q).sum(1, keepdim=True)  # the global query, B x 1 x C
        out = attn.final(attn.proj(g * k) + q)
        return a[..., 0].reshape(b, h, w), x, out.transpose(1, 2).reshape(b, c, h, w)


def images(seed: int = 0, shape=(2, 3, 96, 128)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('form', ['l2', 'softmax'])
def test_maps_match_the_papers_equations(form):
    torch.manual_seed(0)
    backbone = randomised(SwiftFormer('xs', attn_norm=form)).eval()
    x = images()
    maps = attention_maps(backbone, x)
    assert [m.stage for m in maps] == [0, 1, 2, 3]
    assert [m.stride for m in maps] == [4, 8, 16, 32]
    for m in maps:
        ref, attn_in, attn_out = paper_weights(backbone, x, m.stage)
        assert m.form == form
        assert m.weights.shape == (2, 96 // m.stride, 128 // m.stride)
        torch.testing.assert_close(m.weights, ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m.magnitude, ref.abs(), atol=1e-5, rtol=1e-5)
        # these are the weights the attention pools its queries with
        attn = backbone.stages[m.stage].blocks[-1].attn
        with torch.no_grad():
            torch.testing.assert_close(attn(attn_in), attn_out, atol=1e-5, rtol=1e-4)
        if form == 'l2':
            assert not m.constant and m.message == ''
            assert m.weights.std() > 1e-3  # a map, not a constant
            torch.testing.assert_close(m.weights.pow(2).sum((1, 2)), torch.ones(2))
        else:
            assert m.constant and m.message == SOFTMAX_MESSAGE
            assert 'constant by construction' in m.message
            assert torch.equal(m.weights, torch.ones_like(m.weights))


def test_same_maps_in_training_eval_and_deploy_forms():
    torch.manual_seed(0)
    backbone = randomised(SwiftFormer('xs'))
    x = images(1)
    train = {}
    for kernels in ('auto', 'plain'):
        backbone.kernels = kernels
        backbone.train()
        train[kernels] = attention_maps(backbone, x)
        assert backbone.kernels.type == kernels  # restored
        assert backbone.training
    for a, b in zip(train['auto'], train['plain']):
        torch.testing.assert_close(a.weights, b.weights, atol=1e-5, rtol=0)
    backbone.eval()
    evals = {}
    for kernels in ('auto', 'plain'):
        backbone.kernels = kernels
        evals[kernels] = attention_maps(backbone, x)
        assert backbone.kernels.type == kernels
    deploy = copy.deepcopy(backbone)
    deploy.kernels = 'auto'
    deploy.switch_to_deploy()
    deployed = attention_maps(deploy, x)
    assert deploy.kernels.type == 'auto'
    for a, b, c in zip(evals['auto'], evals['plain'], deployed):
        torch.testing.assert_close(a.weights, b.weights, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.weights, c.weights, atol=1e-5, rtol=0)
    # BN batch statistics in training differ from the running ones: a real
    # difference between the forms, which the comparisons above would see
    assert not torch.allclose(train['plain'][0].weights, evals['plain'][0].weights, atol=1e-3)


def test_kernels_setting_is_restored_after_a_failure_and_hooks_removed():
    backbone = SwiftFormer('xs').eval()
    with pytest.raises(RuntimeError):
        attention_maps(backbone, torch.randn(1, 5, 64, 64))  # wrong channel count
    assert backbone.kernels.type == 'auto'
    assert all(not blk.attn._forward_hooks for st in backbone.stages for blk in st.blocks[-1:])


def test_det_model_backbone_and_stage_subset():
    from mmswift.apis import init_model
    model = init_model(
        os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'), device='cpu')
    x = images(2, (1, 3, 64, 96))
    maps = attention_maps(model, x, stages=[1, -1])
    assert [(m.stage, m.stride) for m in maps] == [(1, 8), (3, 32)]
    ref = attention_maps(model.backbone, x)
    torch.testing.assert_close(maps[1].weights, ref[3].weights)
    with pytest.raises(TypeError, match='SwiftFormer'):
        attention_maps(torch.nn.Conv2d(3, 3, 1), x)


def test_extractor_deploy_and_training_forms_give_the_same_cropped_maps():
    """The tool's path (the det config's test preprocessing, padding cropped
    off): its deploy default equals --no-deploy within 1e-5."""
    cfg = os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py')
    rgb = np.random.default_rng(0).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    out = {}
    for deploy in (True, False):
        torch.manual_seed(0)
        extractor = build_feature_extractor(cfg, deploy=deploy)
        out[deploy] = extractor.attention(rgb)
    feats, strides = extractor(rgb)  # the features, cropped the same way
    for a, b, f, s in zip(out[True], out[False], feats, strides):
        assert a.stride == b.stride == s
        assert a.weights.shape[-2:] == b.weights.shape[-2:] == f.shape[-2:]
        torch.testing.assert_close(a.weights, b.weights, atol=1e-5, rtol=0)


def test_attention_ratio_counts_weight_magnitude():
    from mmswift.visualization import mass_in_mask_ratio
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True  # a quarter of the image
    assert attention_in_mask_ratio(torch.full((16, 16), 0.25), mask) == pytest.approx(1.0)
    w = torch.zeros(1, 16, 16)
    w[0, 5:11, 5:11] = 1.0
    w[0, 5:11, 5:11:2] = -1.0  # signs do not cancel: magnitude is what is pooled
    assert attention_in_mask_ratio(w, mask) == pytest.approx(4.0, rel=1e-6)
    # negative weights off the object count as much as positive ones on it
    w[0, 0:2, 0:16] = -1.0
    ratio = attention_in_mask_ratio(w, mask)
    assert ratio == pytest.approx(mass_in_mask_ratio(w[0].abs(), mask))
    assert 1.5 < ratio < 2.5


@pytest.fixture
def photo(tmp_path):
    d = tmp_path / 'imgs'
    d.mkdir()
    yy, xx = np.mgrid[0:90, 0:130]
    img = np.zeros((90, 130, 3), np.uint8) + 40
    img[(yy - 45) ** 2 + (xx - 60) ** 2 < 400] = (230, 60, 30)
    cv2.imwrite(str(d / 'colour.png'), img)
    cv2.imwrite(str(d / 'gray.png'), img[..., 0])
    mask = np.zeros((90, 130), np.uint8)
    mask[(yy - 45) ** 2 + (xx - 60) ** 2 < 400] = 1
    (tmp_path / 'labels').mkdir()
    cv2.imwrite(str(tmp_path / 'labels' / 'colour.png'), mask)
    cv2.imwrite(str(tmp_path / 'labels' / 'gray.png'), mask)
    return d


def test_tool_show_attention_draws_all_stages_and_measures(photo, tmp_path, capsys):
    out = tmp_path / 'out'
    rc = vis_tool.main([str(photo), 'xs', '--show', 'attention', '--masks',
                        str(tmp_path / 'labels'), '--out-dir', str(out)])
    assert rc == 0
    assert sorted(os.listdir(out)) == ['attention_in_mask.json', 'colour_attention.png',
                                       'gray_attention.png']
    fig = cv2.imread(str(out / 'colour_attention.png'))
    assert fig.shape[:2] == (28 + 90, 130 + 4 * (6 + 130))  # input and four stages
    for s in range(4):
        panel = fig[28:, 136 + s * 136:266 + s * 136].astype(float)
        assert panel.std() > 5 and not np.array_equal(panel, fig[28:, :130])
    text = capsys.readouterr().out
    assert 'attention-in-mask ratio' in text and 'stage4:' in text
    report = json.load(open(out / 'attention_in_mask.json'))
    assert sorted(report['stages']) == ['stage1', 'stage2', 'stage3', 'stage4']
    assert report['stages']['stage1']['images'] == 2
    assert all(r['attention_in_mask_ratio'] > 0 for r in report['stages'].values())
    # the default is unchanged: stage one's features
    rc = vis_tool.main([str(photo / 'colour.png'), 'xs', '--out-dir', str(tmp_path / 'f')])
    assert rc == 0 and os.listdir(tmp_path / 'f') == ['colour_mean.png']


def test_tool_says_the_softmax_form_is_constant(photo, tmp_path, capsys, monkeypatch):
    from functools import partialmethod
    # the tool builds SwiftFormer(arch): make that the pre-July-2023 form
    monkeypatch.setattr(SwiftFormer, '__init__',
                        partialmethod(SwiftFormer.__init__, attn_norm='softmax'))
    out = tmp_path / 'out'
    rc = vis_tool.main([str(photo), 'xs', '--show', 'attention', '--out-dir', str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert SOFTMAX_MESSAGE in lines and not any('drawn' in ln for ln in lines)
    assert os.listdir(out) == []  # no flat map drawn


def test_hook_draws_the_attention_of_its_stage(tmp_path):
    from mmengine.runner import Runner

    from mmswift.engine import FeatureMapVisHook
    cfg = tiny_seg_config(tmp_path)
    from mmengine.config import Config
    cfg = Config.fromfile(cfg)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.custom_hooks = []
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match='show'):
        FeatureMapVisHook(show='attn')
    for stage in (0, 2):
        hook = FeatureMapVisHook(interval=1, stage=stage, show='attention')
        runner.model.train()
        hook.after_train_iter(runner, 0)
        assert runner.model.training
        assert runner.model.backbone.kernels.type == 'auto'
    features = FeatureMapVisHook(interval=1, stage=0)  # the default: unchanged
    features.after_train_iter(runner, 0)
    drawn = sorted(os.listdir(os.path.join(runner.log_dir, 'vis_data', 'vis_image')))
    assert drawn == ['stage1_attention_1.png', 'stage1_featmap_1.png',
                     'stage3_attention_1.png']


@pytest.mark.slow
def test_tool_deploy_default_measures_what_no_deploy_measures(tmp_path):
    """Subprocess run of the tool on generated shapes with their instance
    masks: the deploy form (default) and --no-deploy give the same ratios."""
    from mmswift.datasets.shapes_coco import generate_shapes_coco
    ann = generate_shapes_coco(str(tmp_path / 'shapes'), num_train=1, num_val=2, size=64)['val']
    ratios = {}
    for flag in ([], ['--no-deploy']):
        out = tmp_path / f'out{len(flag)}'
        proc = run_py('tools/visualize_features.py', str(tmp_path / 'shapes' / 'val'), 'xs',
                      '--show', 'attention', '--masks', ann, '--out-dir', str(out), *flag)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert sorted(os.listdir(out)) == ['000000_attention.png', '000001_attention.png',
                                           'attention_in_mask.json']
        stages = json.load(open(out / 'attention_in_mask.json'))['stages']
        ratios[bool(flag)] = [stages[f'stage{s}']['attention_in_mask_ratio'] for s in range(1, 5)]
    assert ratios[True] == pytest.approx(ratios[False], rel=1e-5)
