"""Train a detector or segmentor from an mmswift (or any mmdet/mmseg) config.

    python tools/train.py configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py
    bash tools/dist_train.sh configs/seg/fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py 8

The flags are mmdet's / mmseg's; the config decides which library runs.
"""
import argparse
import os
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a detector or segmentor')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='the dir to save logs and models')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    p.add_argument('--auto-scale-lr', action='store_true',
                   help='scale lr by total batch / auto_scale_lr.base_batch_size')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CKPT, or without a value from the latest '
                   'checkpoint in the work dir')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. train_cfg.max_epochs=24')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmswift.engine.launch import (apply_train_args, build_runner,
                                       load_config, setup_local_rank)
    setup_local_rank(args.local_rank)
    try:
        cfg = apply_train_args(load_config(args.config, args.cfg_options), args)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    build_runner(cfg).train()
    return 0


if __name__ == '__main__':
    sys.exit(main())
