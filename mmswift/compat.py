"""Fixes that let mmengine 0.10 / mmcv 2.1 / mmdet 3.3 / mmseg 1.2 run on
today's torch (>= 2.6) and numpy (2.x). Applied once, on ``import mmswift``;
nothing in site-packages is edited. Each fix has a test in
``tests/test_compat.py`` that fails without it.

1. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6 and
   mmengine 0.10.7 calls it without the argument, so a Runner checkpoint
   (numpy scalars and arrays, ``HistoryBuffer`` in its ``message_hub``)
   cannot be resumed or loaded. We allowlist exactly those types rather than
   turning the safety off. Python pickles ``HistoryBuffer.min`` as
   ``getattr(HistoryBuffer, 'min')``; allowlisting the builtin ``getattr``
   would reopen arbitrary code execution, so the name ``builtins.getattr``
   is bound to a getattr that resolves only HistoryBuffer's statistics.
   A checkpoint that needs any other type fails with a message naming it
   (:mod:`mmswift.fileio`); a user who trusts the file allows that
   type explicitly with ``MMSWIFT_SAFE_GLOBALS=module.Name[,...]``.
2. mmengine's ``init_dist('pytorch')`` always calls
   ``torch.cuda.set_device``, which crashes on CPU-only torch; on a machine
   without CUDA the process group is initialised with gloo instead.

Four places override mmengine internals that its public API does not cover
(``_init_dist_pytorch`` here, ``CheckpointHook._save_checkpoint_with_step``,
``runner._randomness_cfg``, the Runner teardown). Each calls
``require_mmengine_internals`` first, which fails loudly on an mmengine
outside the versions they were written against.
"""
import importlib
import os
import pickle
from typing import Any, List

import numpy as np
import torch

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'MMENGINE_INTERNALS_RANGE', 'SAFE_GLOBALS_ENV',
           'apply_all', 'require_mmengine_internals']

SAFE_GLOBALS_ENV = 'MMSWIFT_SAFE_GLOBALS'
# mmengine versions whose internals mmswift's overrides were written against
MMENGINE_INTERNALS_RANGE = ('0.10.0', '0.11.0')  # [low, high)


def require_mmengine_internals(what: str) -> None:
    """Raise if the installed mmengine is outside ``MMENGINE_INTERNALS_RANGE``:
    ``what`` overrides a private part of mmengine that may have changed."""
    import mmengine
    from mmengine.utils import digit_version
    low, high = MMENGINE_INTERNALS_RANGE
    if not digit_version(low) <= digit_version(mmengine.__version__) < digit_version(high):
        raise RuntimeError(
            f'{what} overrides mmengine internals written for mmengine>={low},<{high}, '
            f'but mmengine {mmengine.__version__} is installed; install a supported one '
            f'(pip install "mmengine>={low},<{high}", see requirements/runtime.txt) or '
            f'check that override against this version and widen '
            f'mmswift.compat.MMENGINE_INTERNALS_RANGE')

_HISTORY_BUFFER_STATS = ('min', 'max', 'current', 'mean')


def _numpy_pickle_globals() -> List[Any]:
    core = getattr(np, '_core', None) or np.core  # numpy 2 / numpy 1
    types: List[Any] = [np.dtype, np.ndarray, core.multiarray._reconstruct,
                        core.multiarray.scalar]
    types += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith('DType')]
    return types


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to what mmengine checkpoints pickle."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_STATS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}), which mmswift does '
        f'not allow under weights_only=True')


def _checkpoint_safe_globals() -> List[Any]:
    from mmengine.logging import HistoryBuffer
    return _numpy_pickle_globals() + [
        HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')]


CHECKPOINT_SAFE_GLOBALS: List[Any] = []


def allow_mmengine_checkpoint_types() -> None:
    """Fix 1: let ``weights_only`` loads read mmengine Runner checkpoints."""
    if not CHECKPOINT_SAFE_GLOBALS:
        CHECKPOINT_SAFE_GLOBALS.extend(_checkpoint_safe_globals())
        torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)


def allow_user_trusted_types() -> List[Any]:
    """Allow the ``module.Name`` types listed in ``$MMSWIFT_SAFE_GLOBALS``."""
    allowed = []
    for name in filter(None, (n.strip() for n in
                              os.environ.get(SAFE_GLOBALS_ENV, '').split(','))):
        module, _, attr = name.rpartition('.')
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as e:
            raise ImportError(f'{SAFE_GLOBALS_ENV}={name!r}: cannot import '
                              f'{name} ({e}); give module.Name, comma-separated') from e
        allowed.append(obj)
    if allowed:
        torch.serialization.add_safe_globals(allowed)
    return allowed


def init_dist_gloo_without_cuda() -> None:
    """Fix 2: ``init_dist('pytorch')`` on CPU-only machines uses gloo."""
    from mmengine.dist import utils as dist_utils
    require_mmengine_internals('mmswift.compat.init_dist_gloo_without_cuda')
    original = dist_utils._init_dist_pytorch
    if getattr(original, '_mmswift_patched', False):
        return

    def _init_dist_pytorch(backend: str = 'nccl', init_backend: str = 'torch',
                           **kwargs: Any) -> None:
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        import torch.distributed as dist
        dist.init_process_group(backend='gloo', **kwargs)

    _init_dist_pytorch._mmswift_patched = True  # type: ignore[attr-defined]
    dist_utils._init_dist_pytorch = _init_dist_pytorch


def apply_all() -> None:
    allow_mmengine_checkpoint_types()
    allow_user_trusted_types()
    init_dist_gloo_without_cuda()


apply_all()
