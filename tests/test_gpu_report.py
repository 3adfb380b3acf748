"""The GPU check's report and protocol, on the CPU (issue 29): the report names
failed tests from pytest's JUnit XML, keeps every benchmark row and run, and
compares best setting against best setting; tools/gpu_check.sh plans the
stated protocol, tells a fresh checkout to prepare the offline folder first,
and its report step writes report.json; the docs quote the committed report."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from mmswift.analysis import gpu_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'tools', 'gpu_check.sh')
COMMITTED = os.path.join(ROOT, 'docs', 'gpu', 'h100_report.json')

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="1" tests="5" time="3.0">
<testcase classname="tests.test_cuda" name="test_backbone_forms_on_cuda_equal_cpu[xs]" time="1.0"/>
<testcase classname="tests.test_cuda" name="test_backbone_forms_on_cuda_equal_cpu[l1]" time="1.0">
  <failure message="AssertionError: assert 0.002 &lt; 0.0001">long traceback</failure></testcase>
<testcase classname="tests.test_cuda" name="test_benchmark_on_cuda" time="0.5">
  <failure>Traceback
RuntimeError: CUDA out of memory</failure></testcase>
<testcase classname="tests.test_cuda" name="test_amp_config_and_tools_on_cuda" time="0.1">
  <error message="failed on setup with &quot;fixture 'x' not found&quot;">setup</error></testcase>
<testcase classname="tests.test_cuda" name="test_syncbn" time="0.0">
  <skipped type="pytest.skip" message="needs two GPUs">skip</skipped></testcase>
</testsuite></testsuites>
"""


def _bench(path, rows, hw=(224, 224), batch=32, compile=False, measured='inference'):
    """A tools/benchmark.py JSON with rows (entry, [run times])."""
    results = []
    for entry, times in rows:
        s = sorted(times)
        median = s[len(s) // 2]
        results.append(dict(entry=entry, median_s=median, times_s=times, runs=len(times),
                            throughput_img_s=batch / median))
    data = dict(input_hw=list(hw), batch=batch, compile=compile, measured=measured,
                tf32=dict(matmul=False, cudnn=False), results=results)
    with open(path, 'w') as f:
        json.dump(data, f)
    return data


@pytest.fixture
def run_dir(tmp_path):
    """An OUTDIR as gpu_check.sh leaves it: JUnit XML, log, steps and benchmarks
    in which the fp32 deploy form and timm's compiled AMP are each side's best."""
    (tmp_path / 'pytest_cuda.xml').write_text(JUNIT)
    (tmp_path / 'pytest_cuda.log').write_text('... lots ...\n2 failed, 1 passed, 1 skipped, 1 error in 3.00s\n')
    (tmp_path / 'steps.tsv').write_text('pytest_cuda\t1\t3\tpytest_cuda.log\n'
                                        'bench_b32_224_eager\t0\t20\tbench_b32_224_eager.log\n'
                                        'bench_b256_224_compile\t1\t60\tbench_b256_224_compile.log\n')
    # batch 32: timm 32/0.010 = 3200 img/s fp32, 32/0.016 = 2000 amp; compiled amp 32/0.008 = 4000
    _bench(tmp_path / 'bench_b32_224_eager.json',
           [('timm-l1', [0.011, 0.010, 0.009]), ('timm-l1::amp', [0.016, 0.016, 0.017]),
            ('l1:deploy', [0.005, 0.004, 0.0045]), ('l1:deploy:amp', [0.0048, 0.005, 0.0049]),
            ('l1', [0.020, 0.020, 0.020])])
    (tmp_path / 'bench_b32_224_eager.log').write_text('table\n')
    _bench(tmp_path / 'bench_b32_224_compile.json',
           [('timm-l1::amp', [0.008, 0.008, 0.008]), ('l1:deploy:amp', [0.0047, 0.0047, 0.0047])],
           compile=True)
    _bench(tmp_path / 'bench_maskrcnn_train_amp.json',
           [('maskrcnn-r50::amp', [0.30, 0.29, 0.31]), ('maskrcnn-l1::amp', [0.33, 0.34, 0.33])],
           hw=(800, 1344), batch=2, measured='train_step')
    return tmp_path


def test_junit_names_failed_errored_and_skipped_tests(run_dir):
    j = gpu_report.parse_junit(str(run_dir / 'pytest_cuda.xml'))
    assert (j['tests'], j['passed'], j['failed'], j['error'], j['skipped']) == (5, 1, 2, 1, 1)
    assert j['failed_tests'] == ['tests.test_cuda::test_backbone_forms_on_cuda_equal_cpu[l1]',
                                 'tests.test_cuda::test_benchmark_on_cuda']
    assert j['errored_tests'] == ['tests.test_cuda::test_amp_config_and_tools_on_cuda']
    assert j['skipped_tests'] == ['tests.test_cuda::test_syncbn']
    messages = {c['name'].split('::')[1]: c['message'] for c in j['cases']}
    assert messages['test_backbone_forms_on_cuda_equal_cpu[l1]'] == 'AssertionError: assert 0.002 < 0.0001'
    # no message attribute: the last line of the failure's text
    assert messages['test_benchmark_on_cuda'] == 'RuntimeError: CUDA out of memory'
    assert messages['test_backbone_forms_on_cuda_equal_cpu[xs]'] is None


def test_report_names_failures_keeps_raw_rows_and_files(run_dir):
    report = gpu_report.build_report(str(run_dir))
    t = report['pytest_cuda']
    assert t['summary'] == '2 failed, 1 passed, 1 skipped, 1 error in 3.00s'
    assert t['junit_xml'] == 'pytest_cuda.xml' and t['log'] == 'pytest_cuda.log'
    assert len(t['failed_tests']) == 2 and len(t['errored_tests']) == 1
    b = report['benchmarks']['b32_224_eager']
    assert b['files']['json'] == 'bench_b32_224_eager.json'
    assert b['files']['log'] == 'bench_b32_224_eager.log'
    with open(run_dir / 'bench_b32_224_eager.json', 'rb') as f:
        import hashlib
        assert b['files']['sha256'] == hashlib.sha256(f.read()).hexdigest()
    rows = {r['entry']: r for r in b['rows']}
    assert set(rows) == {'timm-l1', 'timm-l1::amp', 'l1:deploy', 'l1:deploy:amp', 'l1'}
    assert rows['timm-l1']['times_s'] == [0.011, 0.010, 0.009]  # every run, in run order
    assert report['benchmarks']['b32_224_compile']['files']['log'] is None
    assert report['failed_benchmarks'] == ['bench_b256_224_compile']
    assert [s['seconds'] for s in report['steps']] == [3, 20, 60]
    assert report['protocol']['tf32'].startswith('off')
    # no JUnit file: the report says so instead of passing silently
    os.remove(run_dir / 'pytest_cuda.xml')
    assert 'no pytest_cuda.xml' in gpu_report.build_report(str(run_dir))['pytest_cuda']['junit_error']


def test_best_vs_best_and_same_setting(run_dir):
    comps = gpu_report.comparisons(gpu_report.load_benchmarks(str(run_dir)))
    by = {(c['group'], c['ours'], c['peer']): c for c in comps}
    c = by[('inference 224x224 batch 32', 'l1:deploy', 'timm-l1')]
    # timm: fp32 3200, amp 2000, compile+amp 4000 img/s; deploy: fp32 32/0.0045, amp 32/0.0049,
    # compile+amp 32/0.0047: best fp32 against timm's best compile+amp
    assert c['best']['ours_setting'] == 'fp32' and c['best']['peer_setting'] == 'compile+amp'
    assert c['best']['speedup'] == pytest.approx((32 / 0.0045) / 4000)
    assert c['best']['time_ratio'] == pytest.approx(4000 / (32 / 0.0045))
    same = {s['setting']: s['speedup'] for s in c['same_setting']}
    assert same == pytest.approx({'fp32': 0.010 / 0.0045, 'amp': 0.016 / 0.0049,
                                  'compile+amp': 0.008 / 0.0047})
    # the training form has no compiled row: best of what it has, same settings only where both
    c = by[('inference 224x224 batch 32', 'l1', 'timm-l1')]
    assert c['best']['ours_setting'] == 'fp32'
    assert [s['setting'] for s in c['same_setting']] == ['fp32']
    # mmswift models are never peers of each other; whole models pair with their R50
    assert ('inference 224x224 batch 32', 'l1', 'l1:deploy') not in by
    assert ('inference 224x224 batch 32', 'timm-l1', 'l1') not in by
    t = by[('train_step 800x1344 batch 2', 'maskrcnn-l1', 'maskrcnn-r50')]
    assert t['best']['time_ratio'] == pytest.approx(0.33 / 0.30)
    assert any('1.78x best-vs-best' in line for line in gpu_report.summary_lines(comps))


def test_committed_report_best_vs_best_is_what_the_docs_quote():
    """docs/speed.md and the README quote the committed H100 report, not more."""
    with open(COMMITTED) as f:
        committed = json.load(f)
    by = {(c['group'], c['ours'], c['peer']): c for c in gpu_report.comparisons(committed['benchmarks'])}
    deploy = by[('inference 224x224 batch 32', 'l1:deploy', 'timm-l1')]
    assert (deploy['best']['ours_setting'], deploy['best']['peer_setting']) == ('fp32', 'fp32')
    assert round(deploy['best']['speedup'], 2) == 1.21
    assert round({s['setting']: s['speedup'] for s in deploy['same_setting']}['amp'], 2) == 1.75
    train = by[('inference 224x224 batch 32', 'l1', 'timm-l1')]
    assert train['best']['ours_setting'] == 'compile+amp' and round(train['best']['speedup'], 2) == 0.83
    big = 'inference 800x1344 batch 2'
    assert round(by[(big, 'l1:deploy', 'timm-l1')]['best']['speedup'], 2) == 1.35
    assert round(by[(big, 'l1', 'timm-l1')]['best']['speedup'], 2) == 0.86
    step = by[('train_step 800x1344 batch 2', 'maskrcnn-l1', 'maskrcnn-r50')]
    assert round(step['best']['time_ratio'], 2) == 1.14
    with open(os.path.join(ROOT, 'docs', 'speed.md')) as f:
        speed = f.read()
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    assert committed['pytest_cuda'].startswith('5 failed, 4 passed')
    assert '5 failed, 4 passed' in speed and 'all 9' not in speed
    for quoted in ('1.35x', '0.86x', '1.14x', '0.83x'):
        assert quoted in speed
    for text in (speed, readme):
        assert '1.21x' in text
        assert not re.search(r'\*\*1\.75x', text)  # no longer a headline
        assert 'has not been run on a GPU' in text


def _bash(*args, env=None, cwd=ROOT):
    full = dict(os.environ, **(env or {}))
    return subprocess.run(['bash', *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=120)


def test_gpu_check_syntax():
    proc = _bash('-n', SCRIPT)
    assert proc.returncode == 0, proc.stderr


def test_gpu_check_without_offline_folder_says_prepare_first(tmp_path):
    # a fresh checkout: the script alone in a tree with no .offline
    (tmp_path / 'repo' / 'tools').mkdir(parents=True)
    shutil.copy(SCRIPT, tmp_path / 'repo' / 'tools')
    env = {k: v for k, v in os.environ.items() if k != 'MMSWIFT_OFFLINE_DIR'}
    proc = subprocess.run(['bash', 'tools/gpu_check.sh', str(tmp_path / 'out')],
                          cwd=tmp_path / 'repo', env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert '.offline is not a folder' in lines[0]
    assert 'bash tools/prepare_offline.sh .offline' in lines[0]
    assert not (tmp_path / 'out').exists()  # nothing started


def test_gpu_check_plans_the_stated_protocol(tmp_path):
    proc = _bash(SCRIPT, str(tmp_path / 'out'),
                 env={'DRY_RUN': '1', 'GPU_CHECK_STEPS': 'tests bench report'})
    assert proc.returncode == 0, proc.stderr
    cmds = [ln.split('would run: ', 1)[1] for ln in proc.stdout.splitlines() if 'would run: ' in ln]
    pytest_cmd = next(c for c in cmds if ' -m pytest ' in c)
    assert f'--junitxml={tmp_path / "out" / "pytest_cuda.xml"}' in pytest_cmd
    benches = {}
    for c in cmds:
        if 'tools/benchmark.py' in c:
            assert '--tf32 off' in c and '--device cuda' in c and '--keep-going' in c
            name = re.search(r'--json \S+/bench_(\S+)\.json', c).group(1)
            benches[name] = c.split()
    shapes = {'b1_224': ('1', '224', '224'), 'b32_224': ('32', '224', '224'),
              'b256_224': ('256', '224', '224'), 'b2_800x1344': ('2', '800', '1344')}
    for shape, (batch, h, w) in shapes.items():
        for kind in ('eager', 'compile'):
            args = benches[f'{shape}_{kind}']
            assert args[args.index('--batch') + 1] == batch
            assert args[args.index('--input') + 1:args.index('--input') + 3] == [h, w]
            assert ('--compile' in args) == (kind == 'compile')
            for model in ('l1', 'l1:deploy', 'timm-l1', 'tv-resnet50', 'efficientformer-l1'):
                amp = f'{model}:amp' if ':' in model else f'{model}::amp'
                assert amp in args, (shape, kind, model)
                assert (model in args) == (kind == 'eager'), (shape, kind, model)
    train = benches['maskrcnn_train_amp']
    assert {'maskrcnn-r50::amp', 'maskrcnn-l1::amp', '--train-step'} <= set(train)
    assert train[train.index('--batch') + 1] == '2'
    assert {'maskrcnn-r50', 'maskrcnn-l1', 'maskrcnn-l1:deploy'} <= set(benches['maskrcnn_predict'])
    assert {'fpn-r50', 'fpn-l1', 'fpn-l1:deploy'} <= set(benches['fpn_predict'])
    assert {'fpn-r50::amp', 'fpn-l1::amp', '--train-step'} <= set(benches['fpn_train_amp'])
    assert any('mmswift.analysis.gpu_report' in c for c in cmds)


@pytest.mark.slow  # a clean interpreter per case
def test_gpu_check_report_step_writes_report(run_dir):
    """The script's own report step (the real builder, through the venv's python)."""
    proc = _bash(SCRIPT, str(run_dir), env={
        'GPU_CHECK_STEPS': 'report', 'MMSWIFT_VENV': os.path.dirname(os.path.dirname(sys.executable)),
        'CUDA_VISIBLE_DEVICES': ''})
    # the run it describes has failures: the step (and so the script) exits 1
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'failed: tests.test_cuda::test_benchmark_on_cuda' in proc.stdout
    assert 'error: tests.test_cuda::test_amp_config_and_tools_on_cuda' in proc.stdout
    with open(run_dir / 'report.json') as f:
        report = json.load(f)
    assert report['pytest_cuda']['failed'] == 2 and report['environment']['python']
    assert report['comparisons'] and report['summary']


def test_benchmark_records_runs_tf32_and_keeps_going():
    """tools/benchmark.py's additions for the protocol, on the CPU: every run's
    time, the TF32 state, and --keep-going leaving out an entry that fails."""
    import torch

    from mmswift.analysis import benchmark
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        assert benchmark.set_tf32('on') == dict(matmul=True, cudnn=True)
        assert benchmark.set_tf32('off') == dict(matmul=False, cudnn=False)
        assert benchmark.set_tf32('default') == dict(matmul=False, cudnn=False)
        with pytest.raises(ValueError):
            benchmark.set_tf32('yes')
        # ResNet has no deploy form: building it raises; with keep_going it is left out
        with pytest.raises(ValueError):
            benchmark.compare(['resnet18', 'resnet18:deploy'], hw=(32, 32), runs=1, warmup=0,
                              log=lambda m: None)
        report = benchmark.compare(['resnet18', 'resnet18:deploy'], hw=(32, 32), runs=3,
                                   warmup=0, log=lambda m: None, keep_going=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    assert 'deploy form' in report['errors']['resnet18:deploy']
    (row, ) = report['results']
    assert len(row['times_s']) == 3 and row['median_s'] == sorted(row['times_s'])[1]
    assert report['tf32'] == dict(matmul=False, cudnn=False)
    assert 'synchronize' in report['timing']
    assert 'failed resnet18:deploy' in benchmark.format_table(report)
