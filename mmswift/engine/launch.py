"""What ``tools/train.py`` and ``tools/test.py`` do to a config before
handing it to mmengine's Runner. One code path serves mmdet and mmseg
configs alike: the config's ``default_scope`` says which it is, and only
the few flags whose meaning differs between the two (``--show-dir``,
``--out``) look at it.
"""
import os
import os.path as osp
import pickle
import sys
from typing import Any, Callable, Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log


from ..errors import (CheckpointError, CheckpointNotFoundError, ConfigError,
                      ConfigNotFoundError, MMSwiftError, NonFiniteLossError)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(path):
        raise ConfigNotFoundError(
            f'config file not found: {path} (configs live in configs/det/ and '
            f'configs/seg/; run from the repository root or give the full path)')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _replace_norm_type(node: Any, old: str, new: str) -> int:
    """Rewrite ``type=old`` norm configs in place; returns how many."""
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith('norm_cfg') and isinstance(value, dict) \
                    and value.get('type') == old:
                value['type'] = new
                count += 1
            else:
                count += _replace_norm_type(value, old, new)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_norm_type(value, old, new)
    return count


def adapt_to_device(cfg: Config, launcher: str) -> int:
    """Make a GPU-cluster config run on CPU-only machines as well.

    * distributed CPU runs use gloo, and DDP must not get ``device_ids``;
    * SyncBN has no CPU implementation: with several CPU processes it is
      replaced by BN (each process normalises over its own batch), logged.
      A single process needs nothing: mmengine reverts SyncBN itself.

    Returns how many SyncBN configs were replaced.
    """
    if torch.cuda.is_available() or launcher == 'none':
        return 0
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    n = _replace_norm_type(cfg.model, 'SyncBN', 'BN')
    if n:
        print_log(f'SyncBN has no CPU implementation: {n} SyncBN layer config(s) '
                  f'replaced by BN for this CPU run (statistics per process)',
                  logger='current')
    return n


def require_checkpoint(path: str, what: str) -> None:
    """A one-line error for a checkpoint that is missing or cut off."""
    from .checkpoint import checkpoint_problem
    problem = checkpoint_problem(path)
    if problem == 'missing':
        raise CheckpointNotFoundError(f'{what}: checkpoint not found: {path}')
    if problem:
        raise CheckpointError(f'{what}: checkpoint {path} is {problem}; copy it again, '
                              f'or resume from an earlier one (bare --resume picks the '
                              f'newest complete checkpoint of the work dir)')


def require_matching_variant(path: str, cfg: Config, what: str) -> None:
    """A SwiftFormer det/seg checkpoint must be of the config's variant:
    mmengine loads whole-model checkpoints non-strictly, so an L1 checkpoint
    under an XS config would otherwise be evaluated with random layers."""
    from mmswift.models import SwiftFormer
    from mmswift.models.pretrained import describe_arch, infer_arch
    backbone = cfg.get('model', {}).get('backbone', {})
    arch = backbone.get('arch')
    if not str(backbone.get('type', '')).endswith('SwiftFormer') or \
            not isinstance(arch, str) or arch.lower() not in SwiftFormer.arch_settings:
        return
    from mmswift.compat import explain_unsafe_checkpoint
    try:
        try:  # mmap: only the backbone tensors' shapes are read
            ckpt = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        except RuntimeError:  # pre-zip checkpoints cannot be mapped
            ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(explain_unsafe_checkpoint(path, e) or
                              f'{what}: cannot unpickle {path}: {e}') from e
    sd = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    backbone_sd = {k[len('backbone.'):]: v for k, v in sd.items()
                   if k.startswith('backbone.')}
    if not backbone_sd:
        raise CheckpointError(f'{what}: checkpoint {path} holds no backbone.* weights, '
                              f'so it is not a detector/segmentor checkpoint; ImageNet '
                              f'backbone weights go in model.backbone.init_cfg.checkpoint')
    layers, dims = infer_arch(backbone_sd)
    want = SwiftFormer.arch_settings[arch.lower()]
    if layers != list(want['layers']) or dims != list(want['embed_dims']):
        raise CheckpointError(
            f'{what}: checkpoint {path} holds a {describe_arch(layers, dims, SwiftFormer.arch_settings)} '
            f"backbone but the config builds arch='{arch}'; use the config of that "
            f'variant, or a checkpoint trained with this one')


def apply_train_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if args.amp:
        if not torch.cuda.is_available():
            raise ConfigError('--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper); '
                              'drop --amp to train in fp32 on this machine')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise ConfigError(f'--auto-scale-lr: {args.config} has no '
                              f'auto_scale_lr.base_batch_size to scale from')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        from .checkpoint import find_resumable_checkpoint
        found = find_resumable_checkpoint(cfg.work_dir)
        if found is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; '
                      f'training from the start', logger='current', level=30)
        cfg.resume, cfg.load_from = found is not None, found
    elif args.resume is not None:
        require_checkpoint(args.resume, '--resume')
        cfg.resume, cfg.load_from = True, args.resume
    if cfg.get('load_from') and osp.isfile(cfg.load_from):
        require_matching_variant(cfg.load_from, cfg,
                                 '--resume' if cfg.get('resume') else 'load_from')
    adapt_to_device(cfg, args.launcher)
    return cfg


def apply_test_args(cfg: Config, args) -> Config:
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    require_checkpoint(args.checkpoint, 'CHECKPOINT')
    require_matching_variant(args.checkpoint, cfg, 'CHECKPOINT')
    cfg.load_from = args.checkpoint
    if not getattr(args, 'no_deploy', False):
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='mmswift.DeployHook')]
    scope = cfg.get('default_scope', 'mmdet')
    if args.show_dir or args.show:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise ConfigError(f'{args.config} has no default_hooks.visualization '
                              f'to draw with; --show/--show-dir need one')
        hook['draw'] = True
        if args.show:
            hook['show'] = True
            hook['wait_time'] = args.wait_time
        if args.show_dir:
            if scope == 'mmseg':  # SegVisualizationHook draws into the visualizer's save_dir
                cfg.visualizer['save_dir'] = args.show_dir
                hook['interval'] = 1
            else:  # DetVisualizationHook
                hook['test_out_dir'] = args.show_dir
    if args.out:
        if scope == 'mmseg':  # a folder of predicted label PNGs, as mmseg's test.py
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:  # a pickle of predictions, as mmdet's test.py
            if not args.out.endswith(('.pkl', '.pickle')):
                raise ConfigError(f'--out {args.out}: detection results are saved as a '
                                  f'.pkl/.pickle file')
            evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
                else [cfg.test_evaluator]
            cfg.test_evaluator = evaluators + [
                dict(type='DumpDetResults', out_file_path=args.out)]
    adapt_to_device(cfg, args.launcher)
    return cfg


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def setup_local_rank(local_rank: int) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(local_rank)


def run_tool(job: Callable[[], Any], checkpoint: Callable[[], Optional[str]]) -> int:
    """Run a tool's job; mmswift's errors become one ``error:`` line on
    stderr and a non-zero exit status (1: training diverged, 2: bad input).
    Anything else keeps its traceback (exit status 1).

    ``checkpoint()`` names the file being loaded, for the weights_only message.
    """
    from mmswift.compat import explain_unsafe_checkpoint
    try:
        job()
        return 0
    except NonFiniteLossError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except MMSwiftError as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    except pickle.UnpicklingError as e:
        message = explain_unsafe_checkpoint(checkpoint() or 'being loaded', e)
        if message is None:
            raise
        print(f'error: {message}', file=sys.stderr)
        return 2


def release_runner(runner) -> None:
    """Free a finished Runner, then close the process group, while every
    thread is still alive. mmengine leaves both to interpreter exit, where
    the DDP wrapper's reference keeps gloo's process group alive into
    teardown, and a finished rank now and then aborts ("terminate called
    without an active exception"): a job that succeeded exits with SIGABRT."""
    import gc

    import torch.distributed as dist
    runner.__dict__.clear()  # the model (DDP), loops and hooks refer back to it
    del runner
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
