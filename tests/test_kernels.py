"""The fast forms (``kernels='auto'``) against the plain blocks
(``kernels='plain'``), through the backbone's public switch; the deploy
fold; the cases where autograd users need the plain path."""
import copy
from unittest import mock

import pytest
import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn as nn
import torch.nn.functional as F

from mmswift.errors import ConfigError
from mmswift.models import SwiftFormer
from mmswift.models import kernels as fast
from mmswift.models.kernels import BlockedMlpResidual, KernelConfig

from .conftest import randomize_

# the CPU training MLPs with 256 rows a block (stage one of a 67x93 input:
# 7 blocks, the last one ragged), recomputing or keeping the hidden activation
RECOMPUTE = dict(type='auto', recompute_mlp_min_bytes=0, rows_per_block=256)
KEPT = dict(type='auto', recompute_mlp_min_bytes=2**62, rows_per_block=256)


def max_rel(a, b):
    return max(float((u - v).abs().max() / u.abs().max()) for u, v in zip(a, b))


def twin(model, kernels):
    """The same weights, another form."""
    other = copy.deepcopy(model)
    other.kernels = kernels
    return other


def training_step(model, x, seed=0, create_graph=False):
    """Features and every gradient (input's first) of one training-mode
    forward and backward of a random projection of the features."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    outs = model(x)
    g = torch.Generator().manual_seed(seed)
    # a random projection: the sum of a train-mode BN's output has no gradient
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [x] + params, create_graph=create_graph, allow_unused=True)
    return [o.detach() for o in outs], list(grads)


def test_the_switch_is_validated_logged_and_settable():
    with mock.patch('mmswift.models.backbones.swiftformer.print_log') as log:
        model = SwiftFormer('xs', kernels='plain')
    assert log.call_args[0][0].startswith("SwiftFormer-XS: kernels='plain'")
    assert model.kernels == KernelConfig('plain')
    model.kernels = dict(type='auto', rows_per_block=64)
    assert model.kernels.rows_per_block == 64 and model.kernels.type == 'auto'
    with pytest.raises(ConfigError, match=r"kernels=\{'type': 'fast'\}; use one of \('auto', "
                       r"'plain'\).*fix model.backbone.kernels"):
        SwiftFormer('xs', kernels='fast')
    with pytest.raises(ConfigError, match='rows_per_blok'):
        SwiftFormer('xs', kernels=dict(rows_per_blok=3))


def test_plain_runs_no_fast_form():
    """``'plain'`` means every block's own forward(): no token-row GEMM, no
    in-place GELU, no merged attention anywhere."""
    model = SwiftFormer('xs', kernels='plain').eval()
    with mock.patch.object(fast.BlockKernels, 'block', side_effect=AssertionError), \
            torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    model.train()
    with mock.patch.object(fast.BlockKernels, 'block', side_effect=AssertionError):
        sum(o.sum() for o in model(torch.randn(2, 3, 64, 64))).backward()


# the two larger variants (4 s of the 6) in the slow tier
@pytest.mark.parametrize('arch', ['xs', 's', pytest.param('l1', marks=pytest.mark.slow),
                                  pytest.param('l3', marks=pytest.mark.slow)])
@pytest.mark.parametrize('kernels', [RECOMPUTE, KEPT], ids=['recompute', 'kept'])
def test_cpu_training_forms_equal_plain(arch, kernels):
    """A training step through the CPU training MLPs (256 rows a block so
    that stage one has 7, the last ragged; the hidden activation recomputed
    or kept for backward) gives the features and every gradient of the plain
    blocks: odd size, batch 2.

    In float64, so that the comparison is tight: in float32 some gradients
    (``w_g``'s, through the normalised scores) cancel to 1e-4 relative by
    rounding alone. Frozen BN statistics, so that no gradient is zero in
    exact arithmetic (a conv bias in front of a train-mode BN)."""
    plain = randomize_(SwiftFormer(arch, norm_eval=True, kernels='plain'), seed=3).double().train()
    x = torch.randn(2, 3, 67, 93, dtype=torch.float64)
    expected_out, expected_grads = training_step(plain, x)
    out, grads = training_step(twin(plain, kernels), x)
    assert all(o.is_contiguous() for o in out)  # NCHW in, NCHW out
    assert max_rel(expected_out, out) < 1e-10
    assert len(grads) == len(expected_grads) and all(g is not None for g in grads)
    assert max_rel(expected_grads, grads) < 1e-10


def test_blocked_mlp_gradients_are_exact():
    """The hand-written backward, and the differentiable one used under
    create_graph, against finite differences (float64)."""
    g = torch.Generator().manual_seed(0)
    n, cin, hidden, cout = 21, 5, 11, 6  # three blocks of 8 rows, the last one short
    shapes = [(n, cin), (n, cout), (hidden, cin), (hidden,), (cout, hidden), (cout,), (cout,)]
    args = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True) for s in shapes]

    for recompute in (True, False):
        def f(*a):
            return BlockedMlpResidual.apply(*a, 8, recompute)
        assert torch.autograd.gradcheck(f, args)
        assert torch.autograd.gradgradcheck(f, args)


@pytest.mark.parametrize('kernels', [KEPT, RECOMPUTE], ids=['kept', 'recompute'])
def test_double_backward_and_constant_incoming_gradients_match_plain(kernels):
    """A gradient penalty: d/dw of |dL/dx|^2. Under the blocked form the
    incoming gradient of a sum is a constant, which once made the input
    gradient come back detached (the penalty silently vanished)."""
    plain = randomize_(SwiftFormer('xs', norm_eval=True, kernels='plain'), seed=5).double().train()
    x = torch.randn(1, 3, 45, 61, dtype=torch.float64)
    results = []
    for model in (plain, twin(plain, kernels)):
        xi = x.clone().requires_grad_(True)
        dx, = torch.autograd.grad(sum(o.sum() for o in model(xi)), xi, create_graph=True)
        assert dx.requires_grad
        params = [p for p in model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(dx.square().sum(), params, allow_unused=True)
        # unused (a bias the input gradient does not depend on): zero
        results.append([torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)])
    expected, got = results
    assert sum(bool(e.any()) for e in expected) > 100
    assert max(float((e - g).abs().max() / e.abs().max()) for e, g in zip(expected, got)
               if e.any()) < 1e-9
    assert all(not g.any() for e, g in zip(expected, got) if not e.any())


def test_torch_func_and_forward_ad_take_the_plain_path():
    """``torch.func`` transforms and forward-mode AD cannot see through the
    fast forms (custom autograd function, out= kernels): they get the plain
    blocks, with the plain blocks' results."""
    plain = randomize_(SwiftFormer('xs', kernels='plain'), seed=6).eval()
    model = twin(plain, RECOMPUTE)
    x, t = torch.randn(1, 3, 48, 64), torch.randn(1, 3, 48, 64)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(m):
        return lambda p: sum(o.square().sum() for o in torch.func.functional_call(m, p, (x,)))
    expected = torch.func.grad(loss(plain))(params)
    got = torch.func.grad(loss(model))(params)
    assert max_rel([expected[k] for k in params], [got[k] for k in params]) < 1e-5
    with forward_ad.dual_level():
        outs = [m(forward_ad.make_dual(x, t)) for m in (plain, model)]
        tangents = [[forward_ad.unpack_dual(o).tangent for o in out] for out in outs]
    assert max_rel(*tangents) < 1e-5
    model.train()
    with forward_ad.dual_level():
        out = model(forward_ad.make_dual(x, t))
        assert all(forward_ad.unpack_dual(o).tangent is not None for o in out)


@pytest.mark.parametrize('trainable', ['layer_scale', 'bias'])
def test_partial_fine_tuning_trains_like_plain(trainable):
    """Only layer scales, or only biases, trainable (the rest frozen, the
    input needs no gradient): the gradients of the plain form, where the
    inference kernels once raised (out= under autograd)."""
    plain = randomize_(SwiftFormer('xs', norm_eval=True, kernels='plain'), seed=7).train()
    plain.requires_grad_(False)
    for name, p in plain.named_parameters():
        p.requires_grad_(trainable in name)
    x = torch.randn(2, 3, 64, 80)
    grads = []
    for model in (plain, twin(plain, KEPT), twin(plain, RECOMPUTE)):
        model.zero_grad(set_to_none=True)
        sum(o.square().mean() for o in model(x)).backward()
        grads.append([p.grad for p in model.parameters() if p.requires_grad])
    assert len(grads[0]) > 20 and all(g is not None for g in grads[0])
    assert max_rel(grads[0], grads[1]) < 1e-4
    assert max_rel(grads[0], grads[2]) < 1e-4


def test_cpu_training_mlps_recompute_where_it_pays(monkeypatch):
    # the policy, at Mask R-CNN's 800x1344: stage one recomputes, the rest keep
    cfg = KernelConfig()
    assert cfg.recompute_mlp(200 * 336, 48, 192, 4)
    assert not cfg.recompute_mlp(100 * 168, 96, 384, 4)
    assert not cfg.recompute_mlp(25 * 42, 384, 1536, 4)
    assert not cfg.recompute_mlp(200 * 336, 48, 48, 4)  # not expanding
    recomputes = []
    real = BlockedMlpResidual.apply
    monkeypatch.setattr(BlockedMlpResidual, 'apply',
                        lambda *a: recomputes.append(a[-1]) or real(*a))
    model = SwiftFormer('xs').train()
    x = torch.randn(1, 3, 64, 64)
    sum(o.mean() for o in model(x)).backward()
    # every MLP: one per ConvEncoder and per SwiftFormer block's local
    # representation (1:1) and MLP; small maps keep the hidden activation
    assert recomputes == [False] * (sum(model.layers) + 4)
    recomputes.clear()
    model.kernels = dict(type='auto', recompute_mlp_min_bytes=0)
    sum(o.mean() for o in model(x)).backward()
    # the expanding ones recompute, the 1:1 local representations keep
    assert recomputes.count(True) == sum(model.layers) and recomputes.count(False) == 4
    recomputes.clear()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(x)
    with torch.no_grad():
        model(x)
    assert recomputes == []


def test_fast_forms_only_where_they_cannot_change_behaviour():
    x = torch.randn(2, 3)
    assert fast.eager_full_precision(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not fast.eager_full_precision(x)
    with forward_ad.dual_level():
        assert not fast.eager_full_precision(x)
    seen = []
    torch.func.vmap(lambda t: seen.append(fast.eager_full_precision(t)) or t)(x)
    assert seen == [False]
    block = torch.nn.Linear(3, 3)
    assert fast.needs_autograd(x, block)  # the weights need their grads
    block.requires_grad_(False)
    assert not fast.needs_autograd(x, block)
    block.bias.requires_grad_(True)  # one trainable tensor is enough
    assert fast.needs_autograd(x, block)
    with torch.no_grad():
        assert not fast.needs_autograd(x.requires_grad_(True), block)


def test_inference_kernels_are_used_at_inference(monkeypatch):
    """The blocks really take the blocked path under no_grad (GELU in place)."""
    calls = []
    real = torch.ops.aten.gelu_

    class Spy:
        def __call__(self, t):
            calls.append(t.shape)
            return real(t)
    monkeypatch.setattr(fast.torch.ops.aten, 'gelu_', Spy(), raising=False)
    model = SwiftFormer('xs').eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    # one per ConvEncoder/LocalRepresentation/MLP: 3+3+6+4 blocks, 4 of them
    # SwiftFormer blocks with two MLPs each
    assert len(calls) == sum(model.layers) + 4
    calls.clear()
    model.kernels = 'plain'
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert calls == []


# every variant against the independent reference: tests/test_fidelity.py
@pytest.mark.parametrize('arch,hw', [('xs', (64, 64)), ('l1', (67, 93))])
def test_eval_and_deploy_forms_equal_plain(arch, hw):
    plain = randomize_(SwiftFormer(arch, kernels='plain'), seed=1).eval()
    model = twin(plain, 'auto')
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        expected = plain(x)
        eval_kernels = model(x)
        model.switch_to_deploy()
        deploy = model(x)
        deploy_cl = model(x.contiguous(memory_format=torch.channels_last))
        model.kernels = 'plain'
        deploy_plain = model(x)
    for got in (eval_kernels, deploy, deploy_cl, deploy_plain):
        assert [g.shape for g in got] == [e.shape for e in expected]
        assert max_rel(expected, got) < 1e-5
    # every BN but the four output norms is folded, every layer scale too
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count('BatchNorm2d') == 4 and 'LayerScale2d' not in kinds
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(RuntimeError, match='deploy form'):
        model.train()


def test_deploy_builds_new_tensors():
    """The fold never changes a tensor someone else holds: a state_dict
    taken before, or tensors shared with another model."""
    model = randomize_(SwiftFormer('xs'), seed=2).eval()
    before = model.state_dict()
    copies = {k: v.clone() for k, v in before.items()}
    shared = SwiftFormer('xs').eval()
    shared.load_state_dict(before, assign=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = shared(x)
        model.switch_to_deploy()
        assert max_rel(expected, shared(x)) == 0
    for k, v in before.items():
        assert torch.equal(v, copies[k]), k


def test_deploy_keeps_batchnorms_without_running_statistics():
    """``track_running_stats=False`` normalises by the batch at inference
    too: not an affine map, so the fold leaves those layers as they are."""
    model = randomize_(SwiftFormer('xs', norm_cfg=dict(type='BN', track_running_stats=False)),
                       seed=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        got = model(x)
    assert max_rel(expected, got) < 1e-5
    assert 'LayerScale2d' not in [type(m).__name__ for m in model.modules()]


def test_out_channels_last_emits_the_same_features_in_channels_last():
    for training in (True, False):
        model = randomize_(SwiftFormer('xs', out_channels_last=True), seed=4).train(training)
        x = torch.randn(2, 3, 64, 96)
        with torch.no_grad():
            got = model(x)
            model.out_channels_last = False
            expected = model(x)
        assert all(o.is_contiguous(memory_format=torch.channels_last) and o.shape[1] > 1
                   for o in got)
        assert all(o.is_contiguous() for o in expected)
        assert max_rel(expected, got) == 0


@pytest.mark.parametrize('kernels', ['auto', 'plain'])
def test_outputs_keep_the_callers_memory_format(kernels):
    """mmcv's CPU RoIAlign indexes NCHW memory: a channels_last feature map
    silently gives wrong RoI features, so NCHW in means NCHW out."""
    model = SwiftFormer('xs', kernels=kernels).eval().switch_to_deploy()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert all(o.is_contiguous() for o in model(x))
        cl = model(x.contiguous(memory_format=torch.channels_last))
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in cl)


@pytest.mark.parametrize('config', ['configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py',
                                    'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py'])
def test_whole_model_outputs_unchanged_by_the_fast_forms(config):
    """Mask R-CNN's RPN/RoI head outputs and Semantic FPN's logits are the
    same from the plain blocks with NCHW features and mmcv's RoIAlign as
    from what the configs run at inference on CPU: the deploy form with the
    fast forms, the configs' feature layout and mmswift's RoIAlign."""
    from mmcv.ops import RoIAlign as MMCVRoIAlign

    from mmswift.analysis.benchmark import _whole_model
    from mmswift.models.roi_extractor import RoIAlign
    torch.manual_seed(0)
    model, sample = _whole_model(config, (160, 224))
    shipped_layout = model.backbone.out_channels_last
    assert shipped_layout == ('seg' in config)
    randomize_(model.backbone, seed=2)
    x = torch.randn(1, 3, 160, 224)
    model.backbone.out_channels_last = False
    model.backbone.kernels = 'plain'
    with torch.no_grad():
        plain = model.backbone(x)
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
        model.backbone.out_channels_last = shipped_layout
        model.backbone.kernels = 'auto'
        model.backbone.switch_to_deploy()
        feats = model.backbone(x)
        assert all(f.is_contiguous(memory_format=torch.channels_last) == shipped_layout
                   for f in feats)
        got = heads(feats, proposals)
    leaves = torch.utils._pytree.tree_leaves
    e = [t for t in leaves(expected) if isinstance(t, torch.Tensor)]
    g = [t for t in leaves(got) if isinstance(t, torch.Tensor)]
    assert len(e) == len(g) > 0
    assert max_rel(e, g) < 1e-4


@pytest.mark.parametrize('drop', [dict(drop_rate=0.5), dict(drop_path_rate=0.5)],
                         ids=['dropout', 'drop_path'])
def test_training_with_dropout_or_drop_path_drops_as_plain(drop):
    """The fast forms apply neither: blocks that drop take forward(). Two
    random states give other outputs (it drops); with stochastic depth (a
    mask per sample, whatever the memory layout) the same random state gives
    the plain form's output. (Dropout's element masks follow the memory
    layout, channels_last between the fast blocks, so they are not
    comparable element for element.)"""
    plain = randomize_(SwiftFormer('xs', kernels='plain', **drop), seed=8).train()
    model = twin(plain, RECOMPUTE)
    x = torch.randn(2, 3, 64, 64)
    outs = []
    for m, seed in ((plain, 0), (model, 0), (model, 1)):
        torch.manual_seed(seed)
        outs.append(m(x))
    assert max_rel(outs[1], outs[2]) > 1e-2  # 'auto' drops
    if 'drop_path_rate' in drop:
        assert max_rel(outs[0], outs[1]) < 1e-5


def _batch_norm_case(seed, shape=(2, 48, 96, 120), mean_scale=20.0):
    """A channels_last map whose channel means lie up to ~20 standard
    deviations from zero (post-ReLU maps, large features), an incoming
    gradient, and a BatchNorm with random affine parameters."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(1, shape[1], 1, 1, generator=g) * mean_scale
    x = torch.randn(shape, generator=g) * 3 + means
    dy = torch.randn(shape, generator=g)
    norm = nn.BatchNorm2d(shape[1])
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=g)
        norm.bias.uniform_(-1.0, 1.0, generator=g)
    cl = torch.channels_last
    return x.contiguous(memory_format=cl), dy.contiguous(memory_format=cl), norm


def test_training_batch_norm_of_channels_last_maps_is_accurate():
    """The fast forms' training BatchNorm of a channels_last map (CPU): its
    output and input gradient within 1e-6 / 5e-7 of the exact (float64)
    ones, where PyTorch's own channels_last kernel, which sums the batch
    statistics naively, is several times further off on the same map."""
    x, dy, norm = _batch_norm_case(0)
    xd = x.double().requires_grad_(True)
    w, b = (p.detach().double() for p in (norm.weight, norm.bias))
    exact = F.batch_norm(xd, None, None, w, b, True, 0.0, norm.eps)
    exact_dx, = torch.autograd.grad(exact, xd, dy.double())

    def errors(bn):
        xi = x.clone().requires_grad_(True)
        y = bn(copy.deepcopy(norm), xi)
        dx, = torch.autograd.grad(y, xi, dy)
        assert y.is_contiguous(memory_format=torch.channels_last)
        return max_rel([exact], [y.detach().double()]), max_rel([exact_dx], [dx.double()])
    y_err, dx_err = errors(fast.batch_norm)
    assert y_err < 1e-6 and dx_err < 5e-7
    torch_y_err, torch_dx_err = errors(lambda n, t: n(t))
    assert torch_y_err > 3 * y_err and torch_dx_err > dx_err  # the case discriminates


def test_training_batch_norm_of_a_dead_channel():
    """A constant (dead) channel: its deviations from the batch mean are
    zero, so the output is the bias, whatever 1/sqrt(eps) multiplies. The
    fast form is at most twice as far from the exact output as PyTorch's
    NCHW BatchNorm (measured 0.5x; without the mean's second pass, 4.6x)."""
    x, _, norm = _batch_norm_case(0)
    x = x.clone()
    x[:, 3] = 0.37
    exact = F.batch_norm(x.double(), None, None, norm.weight.double(), norm.bias.double(),
                         True, 0.0, norm.eps)

    def error(y):
        return float((y.detach().double() - exact)[:, 3].abs().max() / exact.abs().max())
    assert error(fast.batch_norm(copy.deepcopy(norm), x)) <= 2 * error(norm(x.contiguous()))


@pytest.mark.parametrize('momentum', [0.1, None], ids=['momentum', 'cumulative'])
def test_training_batch_norm_of_channels_last_maps_keeps_the_books(momentum):
    """Running mean and (unbiased) variance, num_batches_tracked, over two
    steps, as nn.BatchNorm2d keeps them; the gradients of every input, and
    through double backward (a gradient penalty), in float64; a BatchNorm
    without running statistics normalises with the batch's in eval too."""
    theirs = _batch_norm_case(1, (2, 8, 5, 7))[2].double()
    theirs.momentum = momentum
    mine = copy.deepcopy(theirs)
    for seed in (2, 3):
        x, dy, _ = _batch_norm_case(seed, (2, 8, 5, 7))
        outs = []
        for bn, norm, xi in ((fast.batch_norm, mine, x.double()),
                             (lambda n, t: n(t), theirs, x.double().contiguous())):
            xi = xi.requires_grad_(True)
            y = bn(norm, xi)
            dx, dw = torch.autograd.grad(y, [xi, norm.weight], dy.double(), create_graph=True)
            penalty = torch.autograd.grad(dx.square().sum() + dw.square().sum(),
                                          [norm.weight, norm.bias], allow_unused=True)
            outs.append([y, dx, dw, *(torch.zeros(8) if p is None else p for p in penalty)])
        assert max_rel(outs[1], outs[0]) < 1e-12
        for name, buf in theirs.named_buffers():
            assert torch.allclose(dict(mine.named_buffers())[name], buf, rtol=1e-12), name
    assert int(mine.num_batches_tracked) == 2
    stateless = nn.BatchNorm2d(8, track_running_stats=False).double().eval()
    x = x.double()
    assert torch.allclose(fast.batch_norm(stateless, x), stateless(x.contiguous()), atol=1e-12)


def test_cpu_training_keeps_channels_last_maps_and_plain_modules_get_nchw():
    """CPU training runs on channels_last maps from the stem to the output
    norms, every BatchNorm through the accurate channels_last form. Modules
    that run as themselves (hooked; blocks with stochastic depth) get NCHW
    memory, so that no training BatchNorm is PyTorch's on channels_last."""
    torch_layouts, ours = [], []
    real_bn, real_ours = F.batch_norm, fast.ChannelsLastBatchNorm.apply

    def torch_bn(x, *args, **kwargs):
        training = kwargs.get('training', args[4] if len(args) > 4 else False)
        if training:
            torch_layouts.append('NCHW' if x.is_contiguous() else 'channels_last')
        return real_bn(x, *args, **kwargs)
    with mock.patch('torch.nn.modules.batchnorm.F.batch_norm', torch_bn), \
            mock.patch.object(fast.ChannelsLastBatchNorm, 'apply',
                              lambda *a: ours.append(a[0].shape) or real_ours(*a)):
        model = SwiftFormer('xs').train()
        n_bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
        assert len(ours) == n_bns and torch_layouts == []
        ours.clear()
        model = SwiftFormer('xs', drop_path_rate=0.1).train()
        model.stem.register_forward_hook(lambda *a: None)
        model.stages[1].blocks[0].register_forward_hook(lambda *a: None)
        sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
        assert len(ours) + len(torch_layouts) == n_bns and len(ours) > 0
        # the hooked stem (2), hooked block (1), 4 stochastic-depth blocks (2 each)
        assert len(torch_layouts) >= 11 and set(torch_layouts) == {'NCHW'}
