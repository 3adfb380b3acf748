"""Speed of SwiftFormer backbones and models beside their peers, in one run.

    # backbones at 800x1344 (detection), interleaved, ratios to the reference
    python tools/benchmark.py --compare --task det
    python tools/benchmark.py --compare --task seg              # 512x512
    python tools/benchmark.py --compare --task det --model-level   # Mask R-CNN L1 vs R50, R18
    # any entries, positional: a backbone arch (and form), a peer, a whole det/seg config
    python tools/benchmark.py l1:deploy:amp --input 512 512 --runs 20
    python tools/benchmark.py configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py
    # seconds per training iteration (batch 2) of every det variant at 1333x800
    python tools/benchmark.py maskrcnn-xs maskrcnn-s maskrcnn-l1 maskrcnn-l3 \
        --train-step --batch 2 --input 800 1344 --runs 2 --warmup 1
    # entries: MODEL[:FORM[:PRECISION]], see mmswift/analysis/benchmark.py

Prints a table (absolute times are labelled with the machine) and writes
the same as JSON (--json), with every run's time. On CUDA, --precision
amp is fp16 autocast; on CPU bf16.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

DEFAULT_HW = {'det': (800, 1344), 'seg': (512, 512)}


def default_entries(task: str, model_level: bool, precision: str, device: str) -> list:
    if model_level:
        names = (['maskrcnn-r50', 'maskrcnn-r18', 'maskrcnn-l1', 'maskrcnn-l1:deploy'] if task == 'det'
                 else ['fpn-r50', 'fpn-r18', 'fpn-l1', 'fpn-l1:deploy'])
        if task == 'det' and device == 'cpu':  # R50 with mmswift's CPU RoIAlign, as L1 has
            names.insert(1, 'maskrcnn-r50-fastroi')
        return [f'{n}:{precision}' if ':' in n else f'{n}::{precision}' for n in names]
    entries = ['ref-l1', 'l1', 'l1:deploy', 'resnet18', 'resnet50', 'efficientformer-l1',
               'poolformer-s12', 'xs:deploy', 's:deploy', 'l3:deploy']
    if device == 'cuda':  # CPUs without bf16 units emulate autocast (~25x slower)
        entries += ['ref-l1::amp', 'l1::amp', 'l1:deploy:amp', 'timm-l1', 'timm-l1::amp']
    return entries


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Benchmark SwiftFormer beside its peers')
    p.add_argument('entries', nargs='*', metavar='MODEL[:FORM[:PRECISION]]',
                   help='backbones (xs, l1:deploy, resnet50, ...), whole models (maskrcnn-l1, '
                   'fpn-r50, ...) or det/seg config paths; ratios are to the first')
    p.add_argument('--compare', action='store_true',
                   help='the default side-by-side set (also when no entries are given)')
    p.add_argument('--task', choices=['det', 'seg'], default='det',
                   help='default input size: det 800x1344, seg 512x512')
    p.add_argument('--model-level', action='store_true', help='whole models instead of backbones')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'amp'],
                   help='of the default set with --model-level')
    p.add_argument('--input', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--compile', action='store_true', help='torch.compile every entry')
    p.add_argument('--flops', action='store_true', help="FLOPs via mmengine's analysis")
    p.add_argument('--train-step', action='store_true',
                   help='time one training iteration (forward, backward, optimizer step) '
                   'of whole models on a synthetic batch, instead of inference')
    p.add_argument('--tf32', choices=['default', 'on', 'off'], default='default',
                   help="TF32 for CUDA matmuls and convolutions (default: PyTorch's, "
                   'on for convolutions only); the report records the state')
    p.add_argument('--keep-going', action='store_true',
                   help='leave out an entry that fails to build or run (its error goes in '
                   'the report) instead of stopping')
    p.add_argument('--json', help='output JSON (default work_dirs/benchmark/<time>.json)')
    args = p.parse_args(argv)

    import mmswift  # noqa: F401
    from mmswift.analysis.benchmark import compare, format_table, set_tf32
    if args.entries and args.compare:
        p.error('give entries or --compare, not both')
    if args.entries:
        entries = args.entries
    else:
        entries = default_entries(args.task, args.model_level, args.precision, args.device)
    hw = tuple(args.input) if args.input else DEFAULT_HW[args.task]
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    set_tf32(args.tf32)
    try:
        report = compare(entries, hw, args.batch, args.device, args.warmup, args.runs,
                         args.compile, args.flops, log=log, train_step=args.train_step,
                         keep_going=args.keep_going)
    except (ValueError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    report['command'] = 'python tools/benchmark.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    print(format_table(report))
    out = args.json or osp.join('work_dirs', 'benchmark', time.strftime('%Y%m%d_%H%M%S') + '.json')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f'written to {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
