"""Test a trained detector or segmentor and print its metrics.

    python tools/test.py CONFIG CHECKPOINT [--show-dir DIR] [--out FILE_OR_DIR]

mmdet configs print the COCO bbox/segm table; mmseg configs the mIoU table.
The SwiftFormer backbone runs in its deploy form (``--no-deploy`` keeps the
training form).
``--out``: a .pkl of predictions for detection (as mmdet), a folder of label
PNGs for segmentation (as mmseg). ``--tta``: test-time augmentation as in
mmdet's and mmseg's test.py (the config's ``tta_model`` and ``tta_pipeline``;
Mask R-CNN configs are refused: mmdet's ``DetTTAModel`` merges boxes only).
The test dataset is checked first, once per job (rank 0;
``--skip-data-check`` skips that).
Exit status: 0 done, 2 bad input (one ``error:`` line), 1 anything else.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a detector or segmentor')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='the dir to save logs and metrics')
    p.add_argument('--out', help='where to dump predictions (.pkl for det, dir for seg)')
    p.add_argument('--show', action='store_true', help='show predictions in a window')
    p.add_argument('--show-dir', help='dir to write images with predictions drawn')
    p.add_argument('--wait-time', type=float, default=2, help='the interval of --show (s)')
    p.add_argument('--full-data-check', action='store_true',
                   help='decode every image in the data check (finds files cut off after '
                   'their header; slower)')
    p.add_argument('--skip-data-check', action='store_true',
                   help='do not check the dataset files before testing')
    p.add_argument('--no-deploy', action='store_true',
                   help='test the training form of the backbone (default: its deploy form, '
                   'folded and fused, the same outputs within 1e-4)')
    p.add_argument('--tta', action='store_true',
                   help='test-time augmentation, as mmdet\'s and mmseg\'s test.py: the config\'s '
                   'tta_model wraps its model and tta_pipeline replaces the test pipeline '
                   '(seg: mmseg\'s multi-scale + flip; det: mmdet\'s DetTTAModel with flip, '
                   'boxes only)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config entries')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                   default='none', help='job launcher')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args):
    """--show / --show-dir, as mmdet's and mmseg's test.py set them."""
    from mmswift.errors import ConfigError
    from mmswift.task import task_of
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ConfigError(f'{args.config} has no default_hooks.visualization '
                          f'to draw with; --show/--show-dir need one')
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if task_of(cfg) == 'seg':  # drawn into the visualizer's save_dir
            cfg.visualizer['save_dir'] = args.show_dir
            hook['interval'] = 1
        else:
            hook['test_out_dir'] = args.show_dir


def dump_predictions(cfg, args):
    """--out: label PNGs for mmseg (as mmseg's test.py), a pickle for mmdet."""
    from mmswift.errors import ConfigError
    from mmswift.task import task_of
    if task_of(cfg) == 'seg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
        return
    if not args.out.endswith(('.pkl', '.pickle')):
        raise ConfigError(f'--out {args.out}: detection results are saved as a .pkl/.pickle file')
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [cfg.test_evaluator]
    cfg.test_evaluator = evaluators + [dict(type='DumpDetResults', out_file_path=args.out)]


def _det_flip_tta_pipeline(cfg):
    """mmdet's test.py default: the test pipeline with its packing step
    replaced by a horizontal flip / no flip ``TestTimeAug``."""
    from copy import deepcopy
    data = cfg.test_dataloader.dataset
    while 'dataset' in data:
        data = data['dataset']
    pipeline = deepcopy(data.pipeline)
    pipeline[-1] = dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                    [dict(type='PackDetInputs',
                          meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                     'scale_factor', 'flip', 'flip_direction'))]])
    return pipeline


def enable_tta(cfg, config: str) -> None:
    """--tta as mmseg's and mmdet's test.py do it: ``cfg.tta_model`` wraps
    ``cfg.model`` and ``cfg.tta_pipeline`` becomes the test pipeline. mmseg
    configs inherit both from mmseg's bases (``SegTTAModel``; ADE20K's
    multi-scale + flip pipeline). For mmdet configs without them, mmdet's
    defaults (``DetTTAModel``, flip); mmdet 3.3's ``DetTTAModel`` merges boxes
    only, so a model that predicts masks is refused here, naming the config,
    rather than at its first test batch."""
    from mmengine.config import ConfigDict

    from mmswift.errors import ConfigError
    from mmswift.task import task_of
    if task_of(cfg) == 'seg':
        missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
        if missing:
            raise ConfigError(f'--tta: {config} has no {" or ".join(missing)} '
                              f'(mmseg\'s configs inherit them from _base_/default_runtime.py '
                              f'and _base_/datasets/*.py); add them or test without --tta')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
        return
    roi_head = cfg.model.get('roi_head') or {}
    if roi_head.get('mask_head') is not None or cfg.model.get('mask_head') is not None:
        raise ConfigError(
            f'--tta: {config} is an instance segmentation model ({cfg.model.type} predicts '
            f'masks), and mmdet 3.3\'s DetTTAModel merges boxes only ("TTA of instance '
            f'segmentation does not support now"); test without --tta')
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='DetTTAModel', tta_cfg=dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        cfg.tta_pipeline = _det_flip_tta_pipeline(cfg)
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def test(args) -> None:
    from mmswift.apis import check_checkpoint
    from mmswift.engine.datacheck import check_datasets, reuse_checked_datasets
    from mmswift.engine.launch import (adapt_to_device, init_distributed, load_config,
                                       on_rank_zero, release_runner)
    from mmswift.models.kernels import check_feature_consumers

    cfg = load_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.tta:  # a config that cannot: before anything is read
        enable_tta(cfg, args.config)
    check_checkpoint(args.checkpoint, cfg, 'CHECKPOINT')
    cfg.load_from = args.checkpoint
    if not args.no_deploy:  # after the checkpoint is loaded: see DeployHook
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='mmswift.DeployHook')]
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.out:
        dump_predictions(cfg, args)
    adapt_to_device(cfg, args.launcher)
    init_distributed(cfg, args.launcher)  # as the Runner would, for the check's verdict
    checked = {}  # the datasets the check built, reused by the Runner (rank 0)
    if not args.skip_data_check:  # once per job: rank 0 checks, the others wait
        on_rank_zero(check_datasets, cfg, ('test',), args.config, cfg.work_dir,
                     full=args.full_data_check, built=checked)

    # build the runner from config
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    check_feature_consumers(runner.model)
    reuse_checked_datasets(runner, checked)
    runner.test()
    release_runner(runner)


def main(argv=None) -> int:
    from mmswift.engine.launch import run_tool
    return run_tool(test, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
