"""Deploy form, channels_last, ONNX export and the benchmark tool."""
import json

import pytest
import torch

from mmswift.models import SwiftFormer

from .conftest import randomize_, run_py


@pytest.mark.parametrize('arch', ['xs', 's', 'l1', 'l3'])
@pytest.mark.parametrize('hw', [(64, 64), (67, 93)])
def test_deploy_form_equals_training_form(arch, hw):
    model = randomize_(SwiftFormer(arch), seed=1).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        got = model(x)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert float((e - g).abs().max() / e.abs().max()) < 1e-4
    # every BN but the four output norms is folded, and so is every layer scale
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count('BatchNorm2d') == 4 and 'LayerScale2d' not in kinds
    with pytest.raises(RuntimeError, match='deploy form'):
        model.train()


def test_deploy_needs_eval_mode():
    with pytest.raises(RuntimeError, match='model.eval'):
        SwiftFormer('xs').train().switch_to_deploy()


def test_deploy_form_in_channels_last():
    model = randomize_(SwiftFormer('xs')).eval().switch_to_deploy()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        a = model(x)
        b = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    for u, v in zip(a, b):
        assert float((u - v).abs().max() / u.abs().max()) < 1e-4


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


def test_export_tool_checks_its_output(tmp_path):
    proc = run_py('tools/export_onnx.py', '--arch', 'xs', '--out', str(tmp_path / 'm.onnx'),
                  '--shape', '64', '64')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'deploy form, opset 17' in proc.stdout and 'max relative error' in proc.stdout


def test_benchmark_tool_tiny_run_writes_valid_json(tmp_path):
    out = tmp_path / 'bench.json'
    proc = run_py('tools/benchmark.py', '--entries', 'ref-xs', 'xs', 'xs:deploy', 'xs:deploy:amp',
                  'resnet18', '--input', '64', '64', '--runs', '1', '--warmup', '1',
                  '--flops', '--json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r['entry']: r for r in report['results']}
    assert list(rows) == ['ref-xs', 'xs', 'xs:deploy', 'xs:deploy:amp', 'resnet18']
    assert rows['ref-xs']['ratio'] == pytest.approx(1.0)
    for r in rows.values():
        assert r['median_s'] > 0 and r['runs'] == 1 and r['peak_mem_mb'] >= 0
    # the same weights: mmswift's forms compute what the reference computes
    assert rows['xs']['max_rel_diff_vs_reference'] < 1e-4
    assert rows['xs:deploy']['max_rel_diff_vs_reference'] < 1e-4
    assert rows['xs']['flops_g'] > 0 and rows['resnet18']['params_m'] > 11
    assert report['interleaved'] and report['machine']
    assert 'ratio' in proc.stdout and 'xs:deploy' in proc.stdout


@pytest.mark.parametrize('extra', [[], ['--train-step']])
def test_benchmark_tool_whole_models(tmp_path, extra):
    out = tmp_path / 'models.json'
    proc = run_py('tools/benchmark.py', '--entries', 'maskrcnn-xs', 'fpn-xs', '--input', '96', '96',
                  '--runs', '1', '--warmup', '1', '--json', str(out), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report['measured'] == ('train_step' if extra else 'inference')
    rows = {r['entry']: r for r in report['results']}
    assert set(rows) == {'maskrcnn-xs', 'fpn-xs'}
    assert rows['maskrcnn-xs']['params_m'] > rows['fpn-xs']['params_m'] > 3
    assert all(r['median_s'] > 0 for r in rows.values())
    assert 'KaimingInit' not in proc.stdout + proc.stderr  # init_weights stays quiet
