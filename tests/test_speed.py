"""ONNX export and the benchmark tool."""
import json

import pytest
import torch

from mmswift.models import SwiftFormer

from .conftest import randomize_, run_py


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
    for r in rows.values():  # every ratio is to the first entry's median
        assert r['median_s'] > 0 and r['runs'] == 1
        assert r['ratio'] == pytest.approx(r['median_s'] / rows['ref-xs']['median_s'], rel=1e-3)
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
