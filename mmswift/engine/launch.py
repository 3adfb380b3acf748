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

from ..compat import apply_all, require_mmengine_internals
from ..errors import (EXIT_BAD_INPUT, EXIT_FAILED, EXIT_PREEMPTED, CheckpointWriteError,
                      ConfigNotFoundError, MMSwiftError, NonFiniteLossError, PreemptedError)


def default_device() -> str:
    """``'cuda:0'`` where CUDA is available, else ``'cpu'``: the default of
    mmdet's and mmseg's tools (``cuda:0``), without failing on a CPU machine."""
    return 'cuda:0' if torch.cuda.is_available() else 'cpu'


def add_device_argument(parser) -> None:
    """``--device``, defaulting to :func:`default_device` (``--help`` says
    which it is on this machine)."""
    parser.add_argument('--device', default=default_device(),
                        help='device to run on, e.g. cpu, cuda:1 (default: cuda:0 when CUDA '
                        'is available, else cpu; on this machine: %(default)s)')


def load_config(path: str) -> Config:
    import os.path as osp
    if not osp.isfile(path):
        raise ConfigNotFoundError(
            f'config file not found: {path} (configs live in configs/det/ and '
            f'configs/seg/; run from the repository root or give the full path)')
    from mmswift.config_scope import register_config_scope
    register_config_scope()  # a user's config may inherit _base_ = 'mmswift::...'
    return Config.fromfile(path)


def _replace_norm_type(node: Any, old: str, new: str) -> int:
    """Rewrite ``type=old`` norm configs in place; returns how many.

    A config rewrite, not mmengine's ``revert_sync_batchnorm``: that works on
    a built model, and the Runner builds and DDP-wraps the model in one step
    (``Runner.__init__``: ``build_model`` then ``wrap_model``, which reverts
    SyncBN only when not distributed), so with several CPU processes the
    wrapped model keeps ``nn.SyncBatchNorm``, whose training forward raises
    "SyncBatchNorm expected input tensor to be on GPU". Rewritten here, the
    config the work dir keeps also says what ran (BN).
    """
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


# how long the other ranks wait for rank 0's verdict (a --full-data-check of
# COCO on a slow shared filesystem; NCCL's own default timeout is 10 min)
RANK_ZERO_TIMEOUT_S = 2 * 3600


def init_distributed(cfg: Config, launcher: str) -> None:
    """Initialise the process group now, as mmengine's Runner would (the same
    ``launcher`` and ``env_cfg.dist_cfg``), so that the ranks can agree on
    something before the Runner exists. The Runner finds it initialised and
    uses it. Nothing happens for ``launcher='none'``."""
    from mmengine.dist import init_dist, is_distributed
    if launcher != 'none' and not is_distributed():
        init_dist(launcher, **cfg.get('env_cfg', {}).get('dist_cfg', {}))


def on_rank_zero(job: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ``job`` on rank 0 only (everywhere in a single process); the other
    ranks wait and receive its verdict: if it raised, they raise the same
    mmswift error with the same message (any other exception becomes a
    ``RuntimeError`` naming it), so an error still stops every rank. Returns
    ``job``'s result on rank 0, None elsewhere. The verdict travels over a
    gloo group with a long timeout (``RANK_ZERO_TIMEOUT_S``): NCCL's would
    end a long wait. An mmswift error raised this way stops the ranks
    together: :func:`run_tool` lets each print it, then meets the others
    before exiting (a launcher ends the remaining ranks as soon as one exits)."""
    import datetime

    import torch.distributed as dist

    from .. import errors
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return job(*args, **kwargs)
    group = dist.new_group(backend='gloo',
                           timeout=datetime.timedelta(seconds=RANK_ZERO_TIMEOUT_S))
    verdict: list = [None]
    if dist.get_rank() == 0:
        try:
            result = job(*args, **kwargs)
        except BaseException as e:
            verdict[0] = (type(e).__name__, str(e))
            dist.broadcast_object_list(verdict, src=0, group=group)
            if isinstance(e, errors.MMSwiftError):
                e.mmswift_stop_group = group  # type: ignore[attr-defined]
            else:
                dist.destroy_process_group(group)
            raise
        dist.broadcast_object_list(verdict, src=0, group=group)
        dist.destroy_process_group(group)
        return result
    dist.broadcast_object_list(verdict, src=0, group=group)
    if verdict[0] is None:
        dist.destroy_process_group(group)
        return None
    name, message = verdict[0]
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.MMSwiftError):
        error = cls(message)
        error.mmswift_stop_group = group  # type: ignore[attr-defined]
        raise error
    dist.destroy_process_group(group)
    raise RuntimeError(f'rank 0 failed: {name}: {message}')


def _stop_together(error: BaseException) -> None:
    """After an error that every rank raised from :func:`on_rank_zero` was
    printed: wait for the other ranks to print theirs, then close the
    process groups, so that every rank reports and exits with its status."""
    import torch.distributed as dist
    group = getattr(error, 'mmswift_stop_group', None)
    if group is None:
        return
    sys.stderr.flush()
    sys.stdout.flush()
    dist.barrier(group=group)
    dist.destroy_process_group(group)
    dist.destroy_process_group()


def run_tool(job: Callable[..., Any], *args: Any) -> int:
    """Run ``job(*args)``; mmswift's errors become one line on stderr and an
    exit status (:mod:`mmswift.errors`): 2 bad input (config, checkpoint,
    dataset, arguments, a busy work dir), 1 training diverged or a checkpoint
    could not be written, 3 preempted with a checkpoint written (requeue with
    ``--resume``). Anything else keeps its traceback (exit status 1).
    The stack fixes (:func:`mmswift.compat.apply_all`) are applied first."""
    try:
        apply_all()
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
        _stop_together(e)
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
