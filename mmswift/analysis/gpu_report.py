"""The report of one ``tools/gpu_check.sh`` run, built from the files the run
leaves in its output folder, so that every number in it can be traced back:

* ``pytest_cuda.xml`` (pytest's ``--junitxml``) and ``pytest_cuda.log`` (the
  whole output): the report names every failed, errored and skipped test;
* ``bench_*.json`` (``tools/benchmark.py --json``, every run's time per row)
  and ``bench_*.log``: the report copies their rows, names the files and
  their SHA-256, and compares each mmswift model with each peer of the same
  measurement (input size, batch, inference or training step), both with
  the *best* setting of each side and setting by setting;
* ``steps.tsv`` (step, exit status, seconds, log): what ran and how long.

    python -m mmswift.analysis.gpu_report OUTDIR    # writes OUTDIR/report.json

It exits 1 when the run it describes has failed or errored tests or a
failed benchmark step, else 0.

Standard library only, apart from the environment line (torch, if it imports).
"""
import glob
import hashlib
import json
import os
import platform
import sys
import xml.etree.ElementTree as ET
from typing import Dict, Iterable, List, Optional

SWIFT = ('xs', 's', 'l1', 'l3')
# whole-model entries: <family>-<backbone>
WHOLE_FAMILIES = ('maskrcnn', 'fpn')

# The protocol tools/gpu_check.sh runs; stated once, here and in docs/speed.md.
PROTOCOL = {
    'timing': 'wall clock (time.perf_counter) of one call; torch.cuda.synchronize() before and '
              'after every timed call; median of the runs; entries interleaved round robin '
              '(one call each per round) within one process',
    'warmup': 'eager: WARMUP calls per entry before timing (default 5); torch.compile: '
              'COMPILE_WARMUP calls (default 2; the first compiles)',
    'settings': 'fp32 (eager, TF32 off), amp (eager, fp16 autocast), compile+amp '
                '(torch.compile, default mode, of the module, fp16 autocast); whole models: '
                'fp32 and amp, compile not measured',
    'tf32': 'off for every row (torch.backends.cuda.matmul.allow_tf32 = '
            'torch.backends.cudnn.allow_tf32 = False; tools/benchmark.py --tf32 off)',
    'cudnn_benchmark': "off (PyTorch's default)",
    'channels_last': 'not used: NCHW (contiguous) inputs and weights for every model',
    'inputs': 'random normal images, the same for every entry; backbones: features only '
              '(no classifier head); whole models: random weights',
    'backbone_rows': '224x224 at batch 1, 32 and 256; 800x1344 at batch 2',
    'whole_model_rows': 'Mask R-CNN predict (800x1344, batch 1) and AMP training step '
                        '(800x1344, batch 2); Semantic FPN predict (512x512, batch 1) and AMP '
                        'training step (512x512, batch 4)',
    'throughput': 'batch / median seconds per call (img/s); speedup = mmswift img/s / peer '
                  'img/s (above 1: mmswift is faster); time_ratio = 1 / speedup',
}


def parse_spec(spec: str) -> Dict[str, str]:
    """``MODEL[:FORM[:PRECISION]]`` as tools/benchmark.py reads it."""
    parts = spec.split(':')
    return dict(model=parts[0].lower(),
                form=parts[1] if len(parts) > 1 and parts[1] else 'train',
                precision=parts[2] if len(parts) > 2 and parts[2] else 'fp32')


def model_key(row: dict) -> str:
    """A model and its form: ``l1``, ``l1:deploy``, ``timm-l1``, ``maskrcnn-l1:deploy``."""
    spec = parse_spec(row['entry'])
    form = row.get('form') or spec['form']
    return row.get('model', spec['model']) + ('' if form == 'train' else f':{form}')


def is_mmswift(key: str) -> bool:
    model = key.split(':')[0]
    if model in SWIFT:
        return True
    family, _, backbone = model.partition('-')
    return family in WHOLE_FAMILIES and backbone in SWIFT


def setting_of(bench: dict, row: dict) -> str:
    precision = row.get('precision') or parse_spec(row['entry'])['precision']
    return ('compile+' if bench.get('compile') else '') + precision


def group_of(bench: dict) -> str:
    h, w = bench['input_hw']
    return f'{bench.get("measured", "inference")} {h}x{w} batch {bench["batch"]}'


def parse_junit(path: str) -> Dict[str, object]:
    """Every test case of a pytest ``--junitxml`` file and its outcome
    (passed, failed, error, skipped), with the message of each that did not pass."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter('testcase'):
        name = '::'.join(p for p in (case.get('classname'), case.get('name')) if p)
        outcome, message = 'passed', None
        for tag in ('failure', 'error', 'skipped'):
            el = case.find(tag)
            if el is not None:
                outcome = {'failure': 'failed'}.get(tag, tag)
                text = [ln for ln in (el.text or '').splitlines() if ln.strip()]
                message = el.get('message') or (text[-1] if text else '')
                break
        cases.append(dict(name=name, outcome=outcome, seconds=float(case.get('time') or 0),
                          message=message))
    counts = {o: sum(c['outcome'] == o for c in cases)
              for o in ('passed', 'failed', 'error', 'skipped')}
    return dict(tests=len(cases), **counts,
                failed_tests=[c['name'] for c in cases if c['outcome'] == 'failed'],
                errored_tests=[c['name'] for c in cases if c['outcome'] == 'error'],
                skipped_tests=[c['name'] for c in cases if c['outcome'] == 'skipped'],
                cases=cases)


def _sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_benchmarks(out_dir: str) -> Dict[str, dict]:
    """``bench_<name>.json`` of ``out_dir`` by name, each with the file it came from."""
    benches = {}
    for path in sorted(glob.glob(os.path.join(out_dir, 'bench_*.json'))):
        name = os.path.basename(path)[len('bench_'):-len('.json')]
        with open(path) as f:
            b = json.load(f)
        log = path[:-len('.json')] + '.log'
        b['files'] = dict(json=os.path.basename(path), sha256=_sha256(path),
                          log=os.path.basename(log) if os.path.exists(log) else None)
        benches[name] = b
    return benches


def table(benches: Dict[str, dict]) -> Dict[str, Dict[str, Dict[str, dict]]]:
    """group -> model -> setting -> the row's numbers and where they came from."""
    out: Dict[str, Dict[str, Dict[str, dict]]] = {}
    for name, b in benches.items():
        for row in b.get('results', b.get('rows', [])):
            settings = out.setdefault(group_of(b), {}).setdefault(model_key(row), {})
            setting = setting_of(b, row)
            if setting in settings:  # the same row twice: keep the first, say so
                settings[setting].setdefault('also_in', []).append(name)
                continue
            settings[setting] = dict(throughput_img_s=row['throughput_img_s'],
                                     median_s=row['median_s'], entry=row['entry'], benchmark=name)
    return out


def best_setting(settings: Dict[str, dict]) -> str:
    return max(settings, key=lambda s: settings[s]['throughput_img_s'])


def comparisons(benches: Dict[str, dict], ours: Optional[Iterable[str]] = None,
                peers: Optional[Iterable[str]] = None) -> List[dict]:
    """Each mmswift model (both forms) against each peer of the same group:
    best setting against best setting, and setting by setting."""
    rows = []
    for group, models in table(benches).items():
        mine = [k for k in models if (k in ours if ours is not None else is_mmswift(k))]
        theirs = [k for k in models if k not in mine
                  and (k in peers if peers is not None else not is_mmswift(k))]
        for o in mine:
            for p in theirs:
                so, sp = best_setting(models[o]), best_setting(models[p])
                to, tp = models[o][so]['throughput_img_s'], models[p][sp]['throughput_img_s']
                same = [dict(setting=s, ours_img_s=models[o][s]['throughput_img_s'],
                             peer_img_s=models[p][s]['throughput_img_s'],
                             speedup=models[o][s]['throughput_img_s'] / models[p][s]['throughput_img_s'])
                        for s in models[o] if s in models[p]]
                rows.append(dict(group=group, ours=o, peer=p,
                                 best=dict(ours_setting=so, ours_img_s=to, peer_setting=sp,
                                           peer_img_s=tp, speedup=to / tp, time_ratio=tp / to),
                                 same_setting=same))
    return rows


def summary_lines(comps: List[dict]) -> List[str]:
    lines = []
    for c in comps:
        b = c['best']
        same = ', '.join(f'{s["setting"]} {s["speedup"]:.2f}x' for s in c['same_setting'])
        lines.append(f'{c["group"]}: {c["ours"]} best ({b["ours_setting"]}) {b["ours_img_s"]:.1f} img/s '
                     f'vs {c["peer"]} best ({b["peer_setting"]}) {b["peer_img_s"]:.1f} img/s: '
                     f'{b["speedup"]:.2f}x best-vs-best; same setting: {same or "none"}')
    return lines


def read_steps(out_dir: str) -> List[dict]:
    path = os.path.join(out_dir, 'steps.tsv')
    steps = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, rc, seconds, log = (line.rstrip('\n').split('\t') + ['', '', ''])[:4]
                steps.append(dict(step=name, rc=int(rc), seconds=int(seconds), log=log or None))
    return steps


def pytest_section(out_dir: str) -> Dict[str, object]:
    xml, log = (os.path.join(out_dir, f) for f in ('pytest_cuda.xml', 'pytest_cuda.log'))
    sec: Dict[str, object] = dict(junit_xml=None, log=None, summary=None)
    if os.path.exists(log):
        lines = [ln for ln in open(log, errors='replace').read().splitlines() if ln.strip()]
        sec.update(log=os.path.basename(log), log_sha256=_sha256(log),
                   summary=lines[-1] if lines else 'no output')
    if os.path.exists(xml):
        try:
            sec.update(parse_junit(xml), junit_xml=os.path.basename(xml), junit_sha256=_sha256(xml))
        except ET.ParseError as e:
            sec['junit_error'] = f'unreadable: {e}'
    else:
        sec['junit_error'] = 'no pytest_cuda.xml: the tests did not run or pytest did not finish'
    return sec


def build_report(out_dir: str, environment: Optional[dict] = None) -> dict:
    """The report of the run whose files are in ``out_dir``."""
    benches = load_benchmarks(out_dir)
    comps = comparisons(benches)
    smi = os.path.join(out_dir, 'nvidia-smi.txt')
    report = dict(protocol=PROTOCOL, environment=environment or {},
                  nvidia_smi=os.path.basename(smi) if os.path.exists(smi) else None,
                  steps=read_steps(out_dir),
                  pytest_cuda=pytest_section(out_dir),
                  benchmarks={name: dict(files=b['files'], command=b.get('command'),
                                         input_hw=b['input_hw'], batch=b['batch'],
                                         compile=b.get('compile'), measured=b.get('measured'),
                                         warmup=b.get('warmup'), runs=b.get('runs'),
                                         tf32=b.get('tf32'), cudnn_benchmark=b.get('cudnn_benchmark'),
                                         machine=b.get('machine'), errors=b.get('errors') or {},
                                         rows=b['results'])
                              for name, b in benches.items()},
                  best=table(benches), comparisons=comps, summary=summary_lines(comps))
    report['failed_benchmarks'] = [s['step'] for s in report['steps']
                                   if s['step'].startswith('bench_') and s['rc'] != 0]
    return report


def environment() -> dict:
    env = dict(python=platform.python_version())
    try:
        import torch
        env.update(torch=torch.__version__, cuda=torch.version.cuda,
                   gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    except Exception as e:  # the report is still worth writing
        env['torch_error'] = f'{type(e).__name__}: {e}'
    return env


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print('usage: python -m mmswift.analysis.gpu_report OUTDIR', file=sys.stderr)
        return 2
    out_dir = argv[0]
    report = build_report(out_dir, environment())
    with open(os.path.join(out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    t = report['pytest_cuda']
    print('environment:', json.dumps(report['environment']))
    print('pytest -m cuda:', t.get('summary'))
    for key, label in (('failed_tests', 'failed'), ('errored_tests', 'error'),
                       ('skipped_tests', 'skipped')):
        for name in t.get(key) or []:
            print(f'  {label}: {name}')
    if t.get('junit_error'):
        print('  ' + t['junit_error'])
    for name in report['failed_benchmarks']:
        print(f'benchmark step failed: {name} (see its log)')
    for name, b in report['benchmarks'].items():
        for spec, err in b['errors'].items():
            print(f'benchmark {name}: {spec} left out: {err}')
    print('\n'.join(report['summary']))
    print(f'written to {os.path.join(out_dir, "report.json")}')
    # the run it describes failed somewhere: say so in the exit status too
    return int(bool(t.get('failed_tests') or t.get('errored_tests') or report['failed_benchmarks']))


if __name__ == '__main__':
    sys.exit(main())
