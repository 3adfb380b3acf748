"""Train a detector or segmentor from an mmswift (or any mmdet/mmseg) config.

    python tools/train.py configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py
    bash tools/dist_train.sh configs/seg/fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py 8

The flags are mmdet's / mmseg's; the config decides which library runs.
Before training, the train and val datasets are checked (missing root,
invalid annotations, missing or unreadable images) so that a bad dataset
fails in seconds with one line; ``--skip-data-check`` skips that.
"""
import argparse
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
                   help='resume from CKPT, or without a value from the newest '
                   'complete checkpoint in the work dir')
    p.add_argument('--skip-data-check', action='store_true',
                   help='do not check the dataset files before training')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. train_cfg.max_epochs=24')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmswift.engine.datacheck import check_datasets
    from mmswift.engine.launch import (apply_train_args, build_runner, load_config,
                                       release_runner, run_tool, setup_local_rank)
    setup_local_rank(args.local_rank)
    state = {}

    def train():
        cfg = state['cfg'] = apply_train_args(
            load_config(args.config, args.cfg_options), args)
        if not args.skip_data_check:
            check_datasets(cfg, ('train', 'val'), args.config, cfg.work_dir)
        runner = build_runner(cfg)
        runner.train()
        release_runner(runner)

    return run_tool(train, lambda: state['cfg'].get('load_from') if 'cfg' in state else None)


if __name__ == '__main__':
    sys.exit(main())
