"""Shapes, strides, parameter counts, freezing and config options."""
import pytest
import torch

from mmswift.models import SwiftFormer

ARCHS = ['xs', 's', 'l1', 'l3']


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('batch,h,w', [(1, 64, 64), (2, 97, 131), (1, 33, 250)])
def test_four_scales_with_strides_4_to_32(arch, batch, h, w):
    model = SwiftFormer(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(batch, 3, h, w))
    dims = SwiftFormer.arch_settings[arch]['embed_dims']
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        # every 3x3/stride-2/pad-1 conv maps n -> ceil(n / 2)
        eh, ew = h, w
        for _ in range(i + 2):
            eh, ew = (eh + 1) // 2, (ew + 1) // 2
        assert out.shape == (batch, dims[i], eh, ew), (i, stride)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('arch,paper_m', [('xs', 3.5), ('s', 6.1), ('l1', 12.1), ('l3', 28.5)])
def test_parameter_count_matches_paper(arch, paper_m):
    """Paper counts backbone + classifier BN + head + distillation head."""
    model = SwiftFormer(arch, out_norm_cfg=None)
    c = model.embed_dims[-1]
    classifier = 2 * c + 2 * (c * 1000 + 1000)
    total = sum(p.numel() for p in model.parameters()) + classifier
    assert abs(total / 1e6 - paper_m) <= 0.05


def test_arch_is_case_insensitive_and_dict_works():
    assert SwiftFormer('L1').embed_dims == [48, 96, 192, 384]
    custom = SwiftFormer(dict(layers=[1, 1, 2, 1], embed_dims=[16, 24, 32, 40]))
    outs = custom(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 24, 32, 40]
    assert custom.stages[2].blocks[0].__class__.__name__ == 'ConvEncoder'
    assert custom.stages[2].blocks[1].__class__.__name__ == 'SwiftFormerBlock'


def test_unknown_arch_lists_valid_variants():
    with pytest.raises(ValueError) as e:
        SwiftFormer('l2')
    assert "'l2'" in str(e.value)
    assert 'xs, s, l1, l3' in str(e.value)


def test_out_indices_negative_and_subset():
    model = SwiftFormer('xs', out_indices=(-1, 1)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [56, 220]
    assert model.out_channels == [56, 220]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3')
    assert not hasattr(model, 'norm0')
    with pytest.raises(IndexError):
        SwiftFormer('xs', out_indices=(4, ))


def test_out_norm_cfg_none_emits_raw_stage_outputs():
    torch.manual_seed(0)
    normed = SwiftFormer('xs').eval()
    raw = SwiftFormer('xs', out_norm_cfg=None).eval()
    raw.load_state_dict(normed.state_dict(), strict=False)
    for i in range(4):  # give the output norms non-identity statistics
        getattr(normed, f'norm{i}').running_mean.fill_(0.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = normed(x), raw(x)
    for i in range(4):
        expected = getattr(normed, f'norm{i}')(b[i])
        torch.testing.assert_close(a[i], expected)
        assert not torch.allclose(a[i], b[i])


def _stem_and_stage_params(model, k):
    mods = [model.stem] + [model.stages[i] for i in range(k)] + \
        [getattr(model, f'norm{i}') for i in range(k)]
    return [p for m in mods for p in m.parameters()]


@pytest.mark.parametrize('frozen', [0, 2])
def test_frozen_stages_really_freeze(frozen):
    torch.manual_seed(0)
    model = SwiftFormer('xs', frozen_stages=frozen)
    model.train()
    frozen_params = _stem_and_stage_params(model, frozen)
    frozen_ids = {id(p) for p in frozen_params}
    assert all(not p.requires_grad for p in frozen_params)
    trainable = [p for p in model.parameters() if id(p) not in frozen_ids]
    assert all(p.requires_grad for p in trainable)
    # frozen BNs stay in eval mode after train(), the rest train
    frozen_bns = [m for m in [model.stem] + list(model.stages[:frozen])
                  for m in m.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen_bns and all(not m.training for m in frozen_bns)
    assert model.stages[frozen].training

    before = [p.detach().clone() for p in frozen_params]
    stats_before = [m.running_mean.clone() for m in frozen_bns]
    later = model.stages[-1].blocks[0].dwconv.weight.detach().clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = sum(o.mean() for o in model(torch.randn(2, 3, 64, 64)))
    loss.backward()
    opt.step()
    for b, p in zip(before, frozen_params):
        assert torch.equal(b, p)
    for s, m in zip(stats_before, frozen_bns):
        assert torch.equal(s, m.running_mean)
    assert not torch.equal(later, model.stages[-1].blocks[0].dwconv.weight)


def test_train_returns_self_and_norm_eval_keeps_statistics():
    model = SwiftFormer('xs', norm_eval=True)
    assert model.train() is model
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not m.training for m in bns)
    stats = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns))
    # and without norm_eval the same batch does move them
    model2 = SwiftFormer('xs').train()
    bn = model2.stem[1]
    before = bn.running_mean.clone()
    model2(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert not torch.equal(before, bn.running_mean)


def test_drop_path_only_on_swiftformer_blocks():
    model = SwiftFormer('xs', drop_path_rate=0.3)
    rates = [getattr(b.drop_path, 'drop_prob', 0.0) for s in model.stages for b in s.blocks]
    # official: ConvEncoders carry none; SwiftFormer blocks rise linearly
    layers = model.layers
    last = [sum(layers[:i + 1]) - 1 for i in range(4)]
    for idx, r in enumerate(rates):
        expected = 0.3 * idx / (sum(layers) - 1) if idx in last else 0.0
        assert r == pytest.approx(expected)
    model.train()
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    a = model(x)[-1]
    torch.manual_seed(1)
    b = model(x)[-1]
    assert not torch.allclose(a, b)  # stochastic in training


def test_attention_forms_differ_and_l2_matches_definition():
    """'l2' normalises token scores over tokens (official since July 2023)."""
    from mmswift.models.layers import EfficientAdditiveAttention
    torch.manual_seed(0)
    attn = EfficientAdditiveAttention(8, attn_norm='l2')
    x = torch.randn(2, 8, 5, 7)
    out = attn(x)
    # the official token-space formulation, B x N x C
    t = x.flatten(2).transpose(1, 2)
    q = torch.nn.functional.normalize(attn.to_query(t), dim=-1)
    k = torch.nn.functional.normalize(attn.to_key(t), dim=-1)
    a = torch.nn.functional.normalize(q @ attn.w_g * attn.scale_factor, dim=1)
    g = (a * q).sum(dim=1, keepdim=True)
    ref = attn.final(attn.proj(g * k) + q).transpose(1, 2).reshape(2, 8, 5, 7)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the softmax form: every score is one, G is the plain sum of the queries
    softmax = EfficientAdditiveAttention(8, attn_norm='softmax')
    softmax.load_state_dict({k: v for k, v in attn.state_dict().items()
                             if not k.endswith('attn_norm_code')})
    g = q.sum(dim=1, keepdim=True)
    ref = attn.final(attn.proj(g * k) + q).transpose(1, 2).reshape(2, 8, 5, 7)
    torch.testing.assert_close(softmax(x), ref, rtol=1e-5, atol=1e-6)


def test_channels_last_input_gives_same_output():
    model = SwiftFormer('xs').eval()
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
