"""Deploy form, channels_last, ONNX export and the benchmark tool."""
import json
from contextlib import contextmanager
from unittest import mock

import pytest
import torch

import mmswift.models.layers.blocked_mlp as blocked_mlp
from mmswift.models import SwiftFormer

from .conftest import randomize_, run_py


@contextmanager
def plain_mlps():
    """Every MLP as the reference computes it: 1x1 convs, GELU, residual
    (what CUDA, autocast and tracing get), not the CPU token-row forms."""
    with mock.patch.object(blocked_mlp, 'eager_full_precision', lambda x: False):
        yield


def plain_forward(model, x):
    """The eval-mode output computed with plain differentiable ops: autograd
    on the input rules out the in-place inference kernels."""
    with torch.enable_grad(), plain_mlps():
        return [o.detach() for o in model(x.clone().requires_grad_(True))]


def training_step(model, x, seed=0):
    """Features and every gradient (input's first) of one training-mode
    forward and backward of a random projection of the features."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    outs = model(x)
    g = torch.Generator().manual_seed(seed)
    # a random projection: the sum of a train-mode BN's output has no gradient
    sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs).backward()
    return [o.detach() for o in outs], [x.grad] + [p.grad for p in model.parameters()]


# the two larger variants (4 s of the 6) in the slow tier
@pytest.mark.parametrize('arch', ['xs', 's', pytest.param('l1', marks=pytest.mark.slow),
                                  pytest.param('l3', marks=pytest.mark.slow)])
@pytest.mark.parametrize('blocked_from', [0, float('inf')], ids=['blocked', 'token-rows'])
def test_cpu_training_forms_equal_plain_ops(arch, blocked_from, monkeypatch):
    """A training step through the CPU token-row MLPs (blocked with
    recomputation, or plain GEMMs) gives the features and every gradient of
    the reference's 1x1 convs: odd size, batch 2, several row blocks.

    In float64, so that the comparison is tight: in float32 some gradients
    (``w_g``'s, through the normalised scores) cancel to 1e-4 relative by
    rounding alone. Frozen BN statistics, so that no gradient is zero in
    exact arithmetic (a conv bias in front of a train-mode BN)."""
    model = randomize_(SwiftFormer(arch, norm_eval=True), seed=3).double().train()
    x = torch.randn(2, 3, 67, 93, dtype=torch.float64)
    with plain_mlps():
        expected_out, expected_grads = training_step(model, x)
    monkeypatch.setattr(blocked_mlp, 'TRAINING_MIN_HIDDEN_BYTES', blocked_from)
    monkeypatch.setattr(blocked_mlp, 'CPU_ROWS_PER_BLOCK', 256)  # 7 blocks at stage one, the last ragged
    out, grads = training_step(model, x)
    assert all(o.is_contiguous() for o in out)  # NCHW in, NCHW out
    assert max_rel(expected_out, out) < 1e-10
    assert len(grads) == len(expected_grads) and all(g is not None for g in grads)
    assert max_rel(expected_grads, grads) < 1e-10


def test_blocked_mlp_gradients_are_exact(monkeypatch):
    """The hand-written backward against finite differences (float64)."""
    monkeypatch.setattr(blocked_mlp, 'CPU_ROWS_PER_BLOCK', 8)
    g = torch.Generator().manual_seed(0)
    n, cin, hidden, cout = 21, 5, 11, 6  # three blocks, the last one short
    shapes = [(n, cin), (n, cout), (hidden, cin), (hidden,), (cout, hidden), (cout,), (cout,)]
    args = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(blocked_mlp.BlockedMlpResidual.apply, args)


def test_cpu_training_takes_the_blocked_mlp_where_it_pays(monkeypatch):
    # the policy, at Mask R-CNN's 800x1344: stage one blocked, the rest not
    use = blocked_mlp.use_blocked_training
    assert use(torch.empty(1, 48, 200, 336), 192)
    assert not use(torch.empty(1, 384, 25, 42), 1536)
    assert not use(torch.empty(1, 48, 200, 336), 48)
    calls = []
    real = blocked_mlp.BlockedMlpResidual.apply
    monkeypatch.setattr(blocked_mlp.BlockedMlpResidual, 'apply',
                        lambda *a: calls.append(a[0].shape) or real(*a))
    model = SwiftFormer('xs').train()
    x = torch.randn(1, 3, 64, 64)
    sum(o.mean() for o in model(x)).backward()
    assert calls == []  # small maps: the token-row GEMMs are faster
    monkeypatch.setattr(blocked_mlp, 'TRAINING_MIN_HIDDEN_BYTES', 0)
    sum(o.mean() for o in model(x)).backward()
    # every expanding MLP: one per ConvEncoder and per SwiftFormer block,
    # not the 1:1 local representations
    assert len(calls) == sum(model.layers)
    calls.clear()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)
    with torch.no_grad():
        model(x)
    assert calls == []


def max_rel(a, b):
    return max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(a, b))


@pytest.mark.parametrize('arch', ['xs', 's', 'l1', 'l3'])
@pytest.mark.parametrize('hw', [(64, 64), (67, 93)])
def test_fused_forms_equal_plain_training_form(arch, hw):
    model = randomize_(SwiftFormer(arch), seed=1).eval()
    x = torch.randn(2, 3, *hw)
    expected = plain_forward(model, x)
    with torch.no_grad():
        eval_kernels = model(x)  # training form at inference: fused kernels
        model.switch_to_deploy()
        deploy = model(x)
        deploy_cl = model(x.contiguous(memory_format=torch.channels_last))
    for got in (eval_kernels, deploy, deploy_cl):
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert max_rel(expected, got) < 1e-4
    # the plain path of the deploy form (used for tracing and autograd) too
    assert max_rel(expected, plain_forward(model, x)) < 1e-4
    # every BN but the four output norms is folded, every layer scale too,
    # and the attention's four projections are merged
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count('BatchNorm2d') == 4 and 'LayerScale2d' not in kinds
    assert kinds.count('Linear') == 0
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match='deploy form'):
        model.train()


def test_inference_kernels_only_where_they_cannot_change_behaviour():
    from mmswift.models.layers import use_inference_kernels
    w = torch.nn.Parameter(torch.randn(3))
    x = torch.randn(2, 3)
    with torch.no_grad():
        assert use_inference_kernels(x, w)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not use_inference_kernels(x, w)
    assert not use_inference_kernels(x, w)  # autograd needs the weights' grads
    assert use_inference_kernels(x, w.detach())
    assert not use_inference_kernels(x.requires_grad_(True), w.detach())


def test_inference_kernels_are_used_at_inference(monkeypatch):
    """The blocks really take the blocked path under no_grad (GELU in place)."""
    calls = []
    real = torch.ops.aten.gelu_

    class Spy:
        def __call__(self, t):
            calls.append(t.shape)
            return real(t)
    import mmswift.models.layers.inference as inference
    monkeypatch.setattr(inference.torch.ops.aten, 'gelu_', Spy(), raising=False)
    model = SwiftFormer('xs').eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # one per ConvEncoder/LocalRepresentation/MLP: 3+3+6+4 blocks, 4 of them
    # SwiftFormer blocks with two MLPs each
    assert len(calls) == sum(model.layers) + 4
    calls.clear()
    plain_forward(model, torch.randn(1, 3, 64, 64))
    assert calls == []


def test_outputs_keep_the_callers_memory_format():
    """mmcv's CPU RoIAlign indexes NCHW memory: a channels_last feature map
    silently gives wrong RoI features, so NCHW in means NCHW out."""
    model = SwiftFormer('xs').eval().switch_to_deploy()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model(x))
        cl = model(x.contiguous(memory_format=torch.channels_last))
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in cl)


@pytest.mark.parametrize('training', [True, False])
def test_out_channels_last_emits_the_same_features_in_channels_last(training):
    model = randomize_(SwiftFormer('xs', out_channels_last=True), seed=4).train(training)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        got = model(x)
        model.out_channels_last = False
        expected = model(x)
    assert all(o.is_contiguous(memory_format=torch.channels_last) and o.shape[1] > 1 for o in got)
    assert all(o.is_contiguous() for o in expected)
    assert max_rel(expected, got) == 0


@pytest.mark.parametrize('config', ['configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py',
                                    'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'])
def test_whole_model_outputs_unchanged_by_the_fast_forms(config):
    """Mask R-CNN's RPN/RoI head outputs and Semantic FPN's logits are the
    same from the plain training form with NCHW features and mmcv's RoIAlign
    as from what the configs run at inference on CPU: the deploy form,
    channels_last features and mmswift's RoIAlign."""
    from mmcv.ops import RoIAlign as MMCVRoIAlign

    from mmswift.analysis.benchmark import _whole_model
    from mmswift.models.roi_extractor import RoIAlign
    torch.manual_seed(0)
    model, sample = _whole_model(config, (160, 224))
    assert model.backbone.out_channels_last
    randomize_(model.backbone, seed=2)
    x = torch.randn(1, 3, 160, 224)
    model.backbone.out_channels_last = False
    plain = plain_forward(model.backbone, x)  # as the training form computes them
    assert all(o.is_contiguous() for o in plain)

    def heads(feats, proposals=None):
        if not hasattr(model, 'rpn_head'):  # Semantic FPN: the logits
            return [model.decode_head(model.neck(feats))]
        feats = model.neck(feats)
        # the RoI heads on fixed proposals: RoIAlign reads the FPN maps
        return [*model.rpn_head(feats)[0], *model.rpn_head(feats)[1],
                *model.roi_head.forward(feats, proposals)]

    with torch.no_grad(), mock.patch.object(RoIAlign, 'forward', MMCVRoIAlign.forward):
        proposals = None
        if hasattr(model, 'rpn_head'):
            proposals = model.rpn_head.predict(model.neck(tuple(plain)), [sample], rescale=False)
            proposals[0] = proposals[0][:50]
        expected = heads(tuple(plain), proposals)
    with torch.no_grad():
        model.backbone.out_channels_last = True
        model.backbone.switch_to_deploy()
        feats = model.backbone(x)
        assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats)
        got = heads(feats, proposals)
    leaves = torch.utils._pytree.tree_leaves
    e = [t for t in leaves(expected) if isinstance(t, torch.Tensor)]
    g = [t for t in leaves(got) if isinstance(t, torch.Tensor)]
    assert len(e) == len(g) > 0
    assert max_rel(e, g) < 1e-4


@pytest.mark.parametrize('deploy', [False, True])
def test_onnx_round_trip(tmp_path, deploy):
    from mmswift.models.export import export_onnx, onnx_max_relative_error
    model = randomize_(SwiftFormer('xs')).eval()
    if deploy:
        model.switch_to_deploy()
    path = export_onnx(model, str(tmp_path / 'xs.onnx'), (64, 96), opset=17)
    import onnx
    proto = onnx.load(path)
    assert proto.opset_import[0].version >= 17
    assert [o.name for o in proto.graph.output] == ['stage1', 'stage2', 'stage3', 'stage4']
    # dynamic height and width: an odd size runs too
    err = onnx_max_relative_error(model, path, [torch.randn(1, 3, 64, 96),
                                                torch.randn(2, 3, 77, 51)])
    assert err < 1e-4


@pytest.mark.slow
def test_export_tool_checks_its_output(tmp_path):
    proc = run_py('tools/export_onnx.py', 'xs', '--out', str(tmp_path / 'm.onnx'),
                  '--shape', '64', '64')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'deploy form, opset 17' in proc.stdout and 'max relative error' in proc.stdout


@pytest.mark.slow
def test_benchmark_tool_tiny_run_writes_valid_json(tmp_path):
    out = tmp_path / 'bench.json'
    # mmdet's ResNet first: its import half-imports mmpretrain, which the
    # peers' loader must survive
    entries = ['ref-xs', 'xs', 'xs:deploy', 'xs:deploy:amp', 'resnet18',
               'efficientformer-l1', 'poolformer-s12']
    proc = run_py('tools/benchmark.py', *entries, '--input', '64', '64',
                  '--runs', '1', '--warmup', '1', '--flops', '--json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'skipped' not in proc.stderr
    report = json.loads(out.read_text())
    rows = {r['entry']: r for r in report['results']}
    assert list(rows) == entries
    # mmpretrain's peers, with their published parameter counts (backbone only)
    assert 10 < rows['efficientformer-l1']['params_m'] < 12
    assert 11 < rows['poolformer-s12']['params_m'] < 12
    assert rows['ref-xs']['ratio'] == pytest.approx(1.0)
    for r in rows.values():
        assert r['median_s'] > 0 and r['runs'] == 1
    # the same weights: mmswift's forms compute what the reference computes
    assert rows['xs']['max_rel_diff_vs_reference'] < 1e-4
    assert rows['xs:deploy']['max_rel_diff_vs_reference'] < 1e-4
    assert rows['xs']['flops_g'] > 0 and rows['resnet18']['params_m'] > 11
    assert report['interleaved'] and report['machine']
    assert 'ratio' in proc.stdout and 'xs:deploy' in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize('extra', [[], ['--train-step']])
def test_benchmark_tool_whole_models(tmp_path, extra):
    out = tmp_path / 'models.json'
    proc = run_py('tools/benchmark.py', 'maskrcnn-xs', 'fpn-xs', '--input', '96', '96',
                  '--runs', '1', '--warmup', '1', '--json', str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['measured'] == ('train_step' if extra else 'inference')
    rows = {r['entry']: r for r in report['results']}
    assert set(rows) == {'maskrcnn-xs', 'fpn-xs'}
    assert rows['maskrcnn-xs']['params_m'] > rows['fpn-xs']['params_m'] > 3
    assert all(r['median_s'] > 0 for r in rows.values())
    assert 'KaimingInit' not in proc.stdout + proc.stderr  # init_weights stays quiet


@pytest.mark.slow
@pytest.mark.parametrize('config', ['configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py',
                                    'configs/seg/fpn_swiftformer-xs_demo-scenes.py'])
def test_train_step_benchmark_labels_fit_the_models_classes(config):
    """The synthetic batch of --train-step has labels the model can predict
    (the demo configs have 5 and 6 classes, not COCO's 80 or ADE20K's 150)."""
    from mmswift.analysis.benchmark import Entry, build_entry
    built = build_entry(Entry.parse(config), (64, 96), 1, 'cpu', train_step=True)
    losses = built.call()
    assert all(torch.isfinite(v).all() for k, v in losses.items() if 'loss' in k)


def test_compare_defaults_hold_the_peers_and_no_emulated_amp_on_cpu():
    from .conftest import load_tool
    defaults = load_tool('benchmark').default_entries
    cpu = defaults('det', False, 'fp32', 'cpu')
    assert {'ref-l1', 'l1:deploy', 'resnet18', 'efficientformer-l1', 'poolformer-s12'} <= set(cpu)
    assert not any(e.endswith(':amp') for e in cpu)
    assert any(e.endswith(':amp') for e in defaults('det', False, 'fp32', 'cuda'))
    # on CPU also R50 with the RoI extractor of mmswift's det configs
    assert defaults('det', True, 'fp32', 'cpu')[:2] == ['maskrcnn-r50::fp32', 'maskrcnn-r50-fastroi::fp32']
    assert 'maskrcnn-r50-fastroi::fp32' not in defaults('det', True, 'fp32', 'cuda')
    assert defaults('seg', True, 'amp', 'cuda') == ['fpn-r50::amp', 'fpn-r18::amp', 'fpn-l1::amp',
                                                    'fpn-l1:deploy:amp']
