"""The main jobs: train a demo model on generated data, test it, report.

    python tools/run_demo.py det     # Mask R-CNN + SwiftFormer-XS on demo shapes (COCO metrics)
    python tools/run_demo.py seg     # Semantic FPN + SwiftFormer-XS on demo scenes (mIoU)

Each generates its dataset under data/ on first use, trains with
tools/train.py into work_dirs/demo-<task>/, tests the final checkpoint with
tools/test.py (which prints mmdet's COCO table or mmseg's per-class IoU
table), and writes work_dirs/demo-<task>/demo_result.json with the training
wall time (measured around tools/train.py: dataset generation, model build,
training and its end-of-training validation) and the metrics, beside the
targets. ``--strict`` exits 1 when a target is missed.
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
                targets={'coco/bbox_mAP': 0.50, 'coco/segm_mAP': 0.45},
                max_train_s=15 * 60),
    'seg': dict(config='configs/seg/fpn_swiftformer-xs_demo-scenes.py',
                targets={'mIoU': 60.0},  # mmseg reports percent
                max_train_s=10 * 60),
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Train, test and report a demo')
    p.add_argument('task', choices=sorted(DEMOS))
    p.add_argument('--work-dir', help='default: work_dirs/demo-<task>')
    p.add_argument('--strict', action='store_true', help='exit 1 when a target is missed')
    p.add_argument('--cfg-options', nargs='+', default=[], help='passed to train.py')
    args = p.parse_args(argv)
    demo = DEMOS[args.task]
    work_dir = args.work_dir or osp.join('work_dirs', f'demo-{args.task}')
    os.makedirs(osp.join(ROOT, work_dir), exist_ok=True)
    py = sys.executable

    train_cmd = [py, 'tools/train.py', demo['config'], '--work-dir', work_dir]
    if args.cfg_options:
        train_cmd += ['--cfg-options', *args.cfg_options]
    start = time.time()
    rc = _run(train_cmd, osp.join(ROOT, work_dir, 'demo_train.log'))
    train_s = time.time() - start
    if rc != 0:
        print(f'error: training failed (exit {rc}); see {work_dir}/demo_train.log', file=sys.stderr)
        return rc
    with open(osp.join(ROOT, work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    test_dir = osp.join(work_dir, 'test')
    rc = _run([py, 'tools/test.py', demo['config'], ckpt, '--work-dir', test_dir],
              osp.join(ROOT, work_dir, 'demo_test.log'))
    if rc != 0:
        print(f'error: testing failed (exit {rc}); see {work_dir}/demo_test.log', file=sys.stderr)
        return rc
    from mmswift.apis import latest_test_metrics
    metrics = latest_test_metrics(osp.join(ROOT, test_dir))
    checks = {k: dict(value=metrics.get(k), target=v,
                      met=metrics.get(k) is not None and metrics[k] >= v)
              for k, v in demo['targets'].items()}
    checks['train_seconds'] = dict(value=round(train_s, 1), target=demo['max_train_s'],
                                   met=train_s <= demo['max_train_s'])
    result = dict(task=args.task, config=demo['config'], checkpoint=ckpt,
                  machine=f'{platform.machine()}, {os.cpu_count()} cores',
                  metrics=metrics, checks=checks)
    with open(osp.join(ROOT, work_dir, 'demo_result.json'), 'w') as f:
        json.dump(result, f, indent=2)
    print(f'\n== demo {args.task}: {demo["config"]}')
    for k, c in checks.items():
        print(f'   {k:>16}: {c["value"]}  (target {"<=" if k == "train_seconds" else ">="} '
              f'{c["target"]})  {"met" if c["met"] else "MISSED"}')
    print(f'   written to {work_dir}/demo_result.json')
    if args.strict and not all(c['met'] for c in checks.values()):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
