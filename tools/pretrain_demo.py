"""Pretrain the demo's SwiftFormer-XS backbone and write it in the official layout.

    python tools/pretrain_demo.py        # configs/pretrain/swiftformer-xs_demo-shape-crops.py

The demo's stand-in for downloading the official ImageNet checkpoint: it
trains the pretraining config with tools/train.py (mmengine's Runner) into
``--work-dir`` and writes the final classifier, converted to the official
release's layout (``{'model': ...}`` with ``patch_embed.*``, ``network.N.*``,
``norm``, ``head``, ``dist_head``), to ``--out``, the file the demo detector's
``model.backbone.init_cfg.checkpoint`` names. Beside it, ``<out>.json``
records the config it was trained from (data generator seed and settings,
schedule), its validation accuracy and its training time. A later run with
the same config reuses the file and says so; ``--force`` trains again.
Exit status: 0 done or reused, 2 bad input, 1 training failed.
"""
import argparse
import glob
import hashlib
import io
import json
import os.path as osp
import subprocess
import sys
import time

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = 'configs/pretrain/swiftformer-xs_demo-shape-crops.py'
OUT = 'checkpoints/swiftformer-xs_demo-shape-crops.pth'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', nargs='?', default=CONFIG, help=f'pretraining config (default {CONFIG})')
    p.add_argument('--out', default=OUT, help=f'official-layout checkpoint to write (default {OUT})')
    p.add_argument('--work-dir', default='work_dirs/demo-pretrain',
                   help='where tools/train.py logs and checkpoints the run')
    p.add_argument('--force', action='store_true', help='pretrain even if --out matches the config')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='passed to tools/train.py (and part of the fingerprint), '
                   'e.g. train_cfg.max_iters=20')
    return p.parse_args(argv)


def fingerprint(config: str, cfg_options: list) -> str:
    """What the checkpoint depends on: the config's resolved text and the overrides."""
    from mmswift.engine.launch import load_config
    text = load_config(config).pretty_text + '\n'.join(sorted(cfg_options))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def val_top1(work_dir: str):
    """The last validation accuracy the newest run in ``work_dir`` logged."""
    found = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                   key=osp.getmtime)
    top1 = None
    for line in open(found[-1]) if found else []:
        top1 = json.loads(line).get('accuracy/top1', top1)
    return top1


def pretrain(args) -> None:
    from mmswift.errors import MMSwiftError
    from mmswift.fileio import atomic_write, read_checkpoint
    from mmswift.models.pretrained import extract_state_dict, to_official

    key = fingerprint(args.config, args.cfg_options)
    meta_path = args.out + '.json'
    if not args.force and osp.isfile(args.out) and osp.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('fingerprint') == key:
            print(f'pretrained backbone: reusing {args.out} (trained from {args.config} with '
                  f'the same data generator seed and settings and schedule, '
                  f'fingerprint {key}; val top-1 {meta.get("val_top1")}%, trained in '
                  f'{meta.get("train_seconds")} s); --force trains it again', flush=True)
            return
    cmd = [sys.executable, osp.join(ROOT, 'tools/train.py'), args.config,
           '--work-dir', args.work_dir]
    if args.cfg_options:
        cmd += ['--cfg-options', *args.cfg_options]
    start = time.time()
    rc = subprocess.call(cmd)
    seconds = round(time.time() - start, 1)
    if rc != 0:
        raise SystemExit(rc)
    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    state = extract_state_dict(read_checkpoint(last, what='the pretraining checkpoint'), last)
    official = to_official(state)
    buf = io.BytesIO()
    torch.save(official, buf)
    atomic_write(buf.getvalue(), args.out)
    meta = dict(fingerprint=key, config=args.config, cfg_options=args.cfg_options,
                source=last, val_top1=val_top1(args.work_dir), train_seconds=seconds)
    if meta['val_top1'] is None:
        raise MMSwiftError(f'{args.work_dir}: the pretraining run logged no validation '
                           f'accuracy; its config needs a val_cfg and val_interval')
    atomic_write(json.dumps(meta, indent=2), meta_path)
    print(f'pretrained backbone: {len(official["model"])} tensors written to {args.out} '
          f'(official layout) from {last}; val top-1 {meta["val_top1"]:.1f}%, '
          f'{seconds} s', flush=True)


def main(argv=None) -> int:
    from mmswift.engine.launch import run_tool
    return run_tool(pretrain, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
