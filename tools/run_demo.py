"""The main jobs: pretrain, fine-tune and test a demo model on generated data, report.

    python tools/run_demo.py det     # Mask R-CNN + SwiftFormer-XS on demo shapes (COCO metrics)
    python tools/run_demo.py seg     # Semantic FPN + SwiftFormer-XS on demo scenes (mIoU)

The real workflow, on data generated under data/ on first use: the det job
first pretrains its backbone with tools/pretrain_demo.py (the stand-in for
the official ImageNet checkpoint, written in the official layout to
checkpoints/; reused when one from the same config is there), then
fine-tunes the detector from it with tools/train.py into
work_dirs/demo-<task>/ (``--from-scratch``: no pretraining, random
backbone), then tests the final checkpoint with tools/test.py (which prints
mmdet's COCO table or mmseg's per-class IoU table; training skips its
own end-of-training validation, which would evaluate the same checkpoint
on the same split). It writes
work_dirs/demo-<task>/demo_result.json with the wall time of each step and
of the whole job, and the metrics, beside the targets. ``--strict`` exits 1
when a target is missed.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

DEMOS = {
    'det': dict(config='configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py',
                pretrain=[],  # tools/pretrain_demo.py's arguments
                targets={'coco/bbox_mAP': 0.55, 'coco/segm_mAP': 0.50},
                max_total_s=15 * 60),
    'seg': dict(config='configs/seg/fpn_swiftformer-xs_demo-scenes.py',
                pretrain=None,
                targets={'mIoU': 90.0},  # mmseg reports percent
                max_total_s=10 * 60),
}


def _run(args, log_path):
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONPATH=ROOT))
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def machine() -> str:
    """The CPU the times and (through its kernels) the metrics depend on."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    import torch
    return (f'{model}, {os.cpu_count()} cores, '
            f'torch CPU capability {torch.backends.cpu.get_cpu_capability()}')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Pretrain, train, test and report a demo')
    p.add_argument('task', choices=sorted(DEMOS))
    p.add_argument('--work-dir', help='default: work_dirs/demo-<task>')
    p.add_argument('--from-scratch', action='store_true',
                   help='det: no pretraining, the backbone starts from random weights')
    p.add_argument('--strict', action='store_true', help='exit 1 when a target is missed')
    p.add_argument('--seed', type=int,
                   help="randomness.seed of pretraining and fine-tuning (default: the configs' 0)")
    p.add_argument('--cfg-options', nargs='+', default=[], help='passed to train.py')
    args = p.parse_args(argv)
    demo = DEMOS[args.task]
    work_dir = args.work_dir or osp.join('work_dirs', f'demo-{args.task}')
    os.makedirs(osp.join(ROOT, work_dir), exist_ok=True)
    py = sys.executable
    seconds = {}

    def step(name: str, cmd: list) -> int:
        start = time.time()
        rc = _run(cmd, osp.join(ROOT, work_dir, f'demo_{name}.log'))
        seconds[name] = round(time.time() - start, 1)
        if rc != 0:
            print(f'error: {name} failed (exit {rc}); see {work_dir}/demo_{name}.log',
                  file=sys.stderr)
        return rc

    # the test step evaluates the final checkpoint on the same split: no
    # validation at the end of training as well (the user's options last)
    cfg_options = ['train_cfg.val_begin=1000000000']
    seed_options = [] if args.seed is None else [f'randomness.seed={args.seed}']
    if demo['pretrain'] is not None and args.from_scratch:
        cfg_options.append('model.backbone.init_cfg=None')
    elif demo['pretrain'] is not None:
        pretrain = list(demo['pretrain'])
        if seed_options:  # its own checkpoint: the seed is part of the fingerprint
            pretrain += ['--cfg-options', *seed_options]
        rc = step('pretrain', [py, 'tools/pretrain_demo.py', *pretrain])
        if rc != 0:
            return rc
    cfg_options += seed_options + args.cfg_options
    rc = step('train', [py, 'tools/train.py', demo['config'], '--work-dir', work_dir,
                        '--cfg-options', *cfg_options])
    if rc != 0:
        return rc
    with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    rc = step('test', [py, 'tools/test.py', demo['config'], ckpt, '--work-dir', test_dir])
    if rc != 0:
        return rc
    from mmswift.apis import latest_test_metrics
    metrics = latest_test_metrics(osp.join(ROOT, test_dir))
    checks = {k: dict(value=metrics.get(k), target=v,
                      met=metrics.get(k) is not None and metrics[k] >= v)
              for k, v in demo['targets'].items()}
    total = round(sum(seconds.values()), 1)
    checks['total_seconds'] = dict(value=total, target=demo['max_total_s'],
                                   met=total <= demo['max_total_s'])
    result = dict(task=args.task, config=demo['config'], checkpoint=ckpt,
                  from_scratch=demo['pretrain'] is not None and args.from_scratch,
                  seed=args.seed,
                  machine=machine(),
                  seconds=seconds, metrics=metrics, checks=checks)
    with open(osp.join(ROOT, work_dir, 'demo_result.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print(f'\n== demo {args.task}: {demo["config"]}')
    print('   wall time: ' + ', '.join(f'{k} {v} s' for k, v in seconds.items()))
    for k, c in checks.items():
        print(f'   {k:>16}: {c["value"]}  (target {"<=" if k == "total_seconds" else ">="} '
              f'{c["target"]})  {"met" if c["met"] else "MISSED"}')
    print(f'   written to {work_dir}/demo_result.json')
    if args.strict and not all(c['met'] for c in checks.values()):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
