"""Train a detector or segmentor from an mmswift (or any mmdet/mmseg) config.

    python tools/train.py configs/det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py
    bash tools/dist_train.sh configs/seg/fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py 8

The flags are mmdet's / mmseg's; the config decides which library runs.
Before training, the train and val datasets are checked (missing root,
invalid annotations, missing or unreadable images) so that a bad dataset
fails in seconds with one line; ``--skip-data-check`` skips that. In a
distributed job the process group is set up first and only rank 0 checks;
the other ranks wait and stop with rank 0's error if it finds one.
A second job started into a work dir that a live job writes to refuses at
once; a claim left by a killed job is taken over (``.mmswift_claim``).
On SIGTERM (``PreemptionHook``) training writes a checkpoint and exits 3.
Exit status: 0 done, 2 bad input (one ``error:`` line), 3 preempted with a
checkpoint (requeue with ``--resume``), 1 anything else.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


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
    p.add_argument('--full-data-check', action='store_true',
                   help='decode every image in the data check (finds files cut off after '
                   'their header; slower)')
    p.add_argument('--skip-data-check', action='store_true',
                   help='do not check the dataset files before training')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries, e.g. train_cfg.max_epochs=24')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def train(args) -> None:
    from mmswift.apis import check_checkpoint
    from mmswift.engine.datacheck import check_datasets, reuse_checked_datasets
    from mmswift.engine.launch import (adapt_to_device, init_distributed, load_config,
                                       on_rank_zero, release_runner)
    from mmswift.engine.workdir_claim import WorkDirClaim
    from mmswift.models.kernels import check_feature_consumers
    from mmswift.errors import ConfigError
    from mmswift.fileio import find_resumable_checkpoint

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    # enable automatic-mixed-precision training
    if args.amp:
        if not torch.cuda.is_available():
            raise ConfigError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); '
                              'drop --amp to train in fp32 on this machine')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    # enable automatically scaling LR
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ConfigError(f'--auto-scale-lr: {args.config} has no '
                              f'auto_scale_lr.base_batch_size to scale from')
        cfg.auto_scale_lr.enable = True
    # resume from the given checkpoint, or from the newest complete one
    if args.resume == 'auto':
        found = find_resumable_checkpoint(cfg.work_dir)
        if found is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; '
                      f'training from the start', logger='current', level=30)
        cfg.resume, cfg.load_from = found is not None, found
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('load_from') and '://' not in cfg.load_from:
        check_checkpoint(cfg.load_from, cfg, '--resume' if cfg.get('resume') else 'load_from')
    adapt_to_device(cfg, args.launcher)
    # the process group first (as the Runner would), so that the ranks can
    # share the claim's and the data check's verdicts
    init_distributed(cfg, args.launcher)
    # one job per work dir (rank 0 holds the claim; a stale one is taken over)
    claim = on_rank_zero(WorkDirClaim(cfg.work_dir).acquire)
    try:
        checked = {}  # the datasets the check built, reused by the Runner (rank 0)
        if not args.skip_data_check:  # once per job: rank 0 checks, the others wait
            on_rank_zero(check_datasets, cfg, ('train', 'val'), args.config, cfg.work_dir,
                         full=args.full_data_check, built=checked)

        # build the runner from config
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        check_feature_consumers(runner.model)
        reuse_checked_datasets(runner, checked)
        runner.train()
        release_runner(runner)
    finally:
        if claim is not None:
            claim.release()


def main(argv=None) -> int:
    from mmswift.engine.launch import run_tool
    return run_tool(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
