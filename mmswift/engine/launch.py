"""What the tools share around mmengine's Runner: reading the config with
a one-line error, adapting a GPU-cluster config to CPU-only machines, exit
codes, and teardown. The flags themselves are handled in ``tools/train.py``
and ``tools/test.py``, the way mmdet's and mmseg's tools handle them.
"""
import sys
from typing import Any, Callable

import torch
from mmengine.config import Config
from mmengine.logging import print_log

from ..compat import require_mmengine_internals
from ..errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_PREEMPTED, CheckpointWriteError,
                      ConfigNotFoundError, MMSwiftError, NonFiniteLossError, PreemptedError)


def load_config(path: str) -> Config:
    import os.path as osp
    if not osp.isfile(path):
        raise ConfigNotFoundError(
            f'config file not found: {path} (configs live in configs/det/ and '
            f'configs/seg/; run from the repository root or give the full path)')
    return Config.fromfile(path)


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


def run_tool(job: Callable[..., Any], *args: Any) -> int:
    """Run ``job(*args)``; mmswift's errors become one line on stderr and an
    exit status (:mod:`mmswift.errors`): 2 bad input (config, checkpoint,
    dataset, arguments, a busy work dir), 1 training diverged or a checkpoint
    could not be written, 3 preempted with a checkpoint written (requeue with
    ``--resume``). Anything else keeps its traceback (exit status 1)."""
    try:
        job(*args)
        return 0
    except PreemptedError as e:
        print(f'preempted: {e}', file=sys.stderr)
        return EXIT_PREEMPTED
    except (NonFiniteLossError, CheckpointWriteError) as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_FAILED
    except MMSwiftError as e:
        print(f'error: {e}', file=sys.stderr)
        return EXIT_BAD_INPUT


def release_runner(runner) -> None:
    """Free a finished Runner, then close the process group, while every
    thread is still alive. mmengine leaves both to interpreter exit, where
    the DDP wrapper's reference keeps gloo's process group alive into
    teardown, and a finished rank now and then aborts ("terminate called
    without an active exception"): a job that succeeded exits with SIGABRT."""
    import gc

    import torch.distributed as dist
    require_mmengine_internals('mmswift.engine.launch.release_runner')
    runner.__dict__.clear()  # the model (DDP), loops and hooks refer back to it
    del runner
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
