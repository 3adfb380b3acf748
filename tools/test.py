"""Test a trained detector or segmentor and print its metrics.

    python tools/test.py CONFIG CHECKPOINT [--show-dir DIR] [--out FILE_OR_DIR]

mmdet configs print the COCO bbox/segm table; mmseg configs the mIoU table.
The SwiftFormer backbone runs in its deploy form (``--no-deploy`` keeps the
training form).
``--out``: a .pkl of predictions for detection (as mmdet), a folder of label
PNGs for segmentation (as mmseg). The test dataset is checked first
(``--skip-data-check`` skips that).
"""
import argparse
import sys

from mmengine.config import DictAction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a detector or segmentor')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the dir to save logs and metrics')
    p.add_argument('--out', help='where to dump predictions (.pkl for det, dir for seg)')
    p.add_argument('--show', action='store_true', help='show predictions in a window')
    p.add_argument('--show-dir', help='dir to write images with predictions drawn')
    p.add_argument('--wait-time', type=float, default=2, help='the interval of --show (s)')
    p.add_argument('--skip-data-check', action='store_true',
                   help='do not check the dataset files before testing')
    p.add_argument('--no-deploy', action='store_true',
                   help='test the training form of the backbone (default: its deploy form, '
                   'folded and fused, the same outputs within 1e-4)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmswift.engine.datacheck import check_datasets
    from mmswift.engine.launch import (apply_test_args, build_runner, load_config,
                                       release_runner, run_tool, setup_local_rank)
    setup_local_rank(args.local_rank)

    def test():
        cfg = apply_test_args(load_config(args.config, args.cfg_options), args)
        if not args.skip_data_check:
            check_datasets(cfg, ('test',), args.config, cfg.work_dir)
        runner = build_runner(cfg)
        runner.test()
        release_runner(runner)

    return run_tool(test, lambda: args.checkpoint)


if __name__ == '__main__':
    sys.exit(main())
