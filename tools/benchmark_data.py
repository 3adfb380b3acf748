"""Time what tools/train.py does before the first iteration, at COCO / ADE20K scale.

    python tools/benchmark_data.py det --root /tmp/coco_scale     # 118,287 images, ~860k instances
    python tools/benchmark_data.py seg --root /tmp/ade_scale      # 20,210 image/label pairs
    python tools/benchmark_data.py det --root /tmp/coco_scale --first-iter

Generates the dataset under --root on first use (tiny files of the real
count and annotation size; see mmswift/analysis/data_scale.py), then runs,
each in a fresh process: the dataset build alone (what the dataset itself
needs), the data check as tools/train.py runs it, and the check with
--full-data-check (every image decoded). --first-iter also launches
tools/train.py on it and reports the seconds until the first iteration is
logged. Prints a table and writes --json.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

CONFIGS = {'det': 'configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py',
           'seg': 'configs/seg/fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py'}


def first_iteration_seconds(config: str, root: str, work_dir: str) -> float:
    """Launch tools/train.py and time it until its first iteration is logged."""
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, '--cfg-options',
           f'train_dataloader.dataset.data_root={root}', 'model.backbone.init_cfg=None',
           'default_hooks.logger.interval=1', 'train_dataloader.batch_size=1',
           'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None',  # train2017 only
           'custom_hooks=[]']  # the tiny images give boxes far outside them: no loss guard
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    try:
        for line in proc.stdout:
            if 'Epoch(train)' in line or 'Iter(train)' in line:
                return time.time() - start
            tail = (tail + [line])[-5:]
    finally:
        proc.kill()
        proc.wait()
    raise RuntimeError(f'tools/train.py ended before its first iteration (exit '
                       f'{proc.returncode}): {"".join(tail)}')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('task', choices=['det', 'seg'])
    p.add_argument('--root', required=True, help='where the generated dataset lives')
    p.add_argument('--scale', type=float, default=1.0,
                   help='fraction of the real sample counts (for a quick try)')
    p.add_argument('--first-iter', action='store_true',
                   help='also time tools/train.py from launch to its first iteration')
    p.add_argument('--json', help='output JSON (default ROOT/benchmark_data.json)')
    args = p.parse_args(argv)
    from mmswift.analysis.data_scale import (ADE_PAIRS, COCO_IMAGES, COCO_INSTANCES,
                                             generate_ade_scale, generate_coco_scale, measure)
    start = time.time()
    if args.task == 'det':
        generate_coco_scale(args.root, images=max(1, round(COCO_IMAGES * args.scale)),
                            instances=max(1, round(COCO_INSTANCES * args.scale)))
    else:
        generate_ade_scale(args.root, pairs=max(1, round(ADE_PAIRS * args.scale)))
    print(f'dataset ready under {args.root} ({time.time() - start:.0f} s)', file=sys.stderr)
    config = CONFIGS[args.task]
    work = osp.join(args.root, 'work')
    rows = {mode: measure(config, args.root, mode, work) for mode in ('build', 'check', 'full')}
    rows['check']['extra_rss_mb'] = rows['check']['peak_rss_mb'] - rows['build']['peak_rss_mb']
    rows['full']['extra_rss_mb'] = rows['full']['peak_rss_mb'] - rows['build']['peak_rss_mb']
    report = dict(task=args.task, config=config, root=args.root, results=rows,
                  command='python tools/benchmark_data.py ' + ' '.join(argv or sys.argv[1:]))
    if args.first_iter:
        report['first_iteration_s'] = round(first_iteration_seconds(config, args.root, work), 1)
    from mmswift.analysis.benchmark import machine_description
    report['machine'] = machine_description()
    print(f'# {report["machine"]}')
    print(f'{"step":<42}{"samples":>9}{"seconds":>9}{"peak RSS (MB)":>15}{"extra RSS (MB)":>16}')
    names = {'build': 'dataset build alone', 'check': 'data check (tools/train.py)',
             'full': 'data check, --full-data-check'}
    for mode, r in rows.items():
        print(f'{names[mode]:<42}{r["samples"]:>9}{r["seconds"]:>9.1f}{r["peak_rss_mb"]:>15}'
              f'{r.get("extra_rss_mb", ""):>16}')
    if 'first_iteration_s' in report:
        print(f'launch to first logged iteration: {report["first_iteration_s"]} s')
    out = args.json or osp.join(args.root, 'benchmark_data.json')
    with open(out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
