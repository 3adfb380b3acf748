"""Fixes that let mmengine 0.10 / mmcv 2.1 / mmdet 3.3 / mmseg 1.2 run on
today's torch (>= 2.6) and numpy (2.x). Nothing in site-packages is edited.
Each fix has a test in ``tests/test_compat.py`` that fails without it.

``import mmswift`` (a config's ``custom_imports``) applies none of them: it
only registers modules, and building the backbone works on any mmengine.
:func:`apply_all` applies them, once, where they are needed:

* at the start of mmswift's tools that run a Runner or an inferencer
  (:func:`mmswift.engine.launch.run_tool`: train, test, image_demo,
  pretrain_demo, convert_checkpoint);
* when a Runner is built from an mmswift config, whatever tool builds it
  (mmdet's and mmseg's ``tools/train.py`` / ``test.py`` included): every
  mmswift hook calls it in its constructor, and the configs name them
  (``default_hooks.checkpoint`` and ``custom_hooks``). mmengine builds the
  hooks in ``Runner.__init__``, before ``train()`` / ``test()`` load or
  resume a checkpoint.

mmswift's own checkpoint reader (:func:`mmswift.fileio.read_checkpoint`:
``init_cfg``, ``tools/test.py``'s check, the converters) and
``mmswift.apis.init_model`` / ``build_inferencer`` allow the types of fix 1
for their own loads only (:func:`allowed_checkpoint_types`), so they work
without :func:`apply_all` and leave torch's global list as they found it.

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
   without CUDA the process group is initialised with gloo instead. Only
   mmswift's tools initialise the process group after :func:`apply_all`
   (mmengine's Runner does it before it builds hooks), so a CPU-only
   distributed run needs ``tools/train.py`` / ``tools/test.py``.
3. The file backend ``'mmswift_atomic'`` (atomic checkpoint writes,
   :class:`mmswift.fileio.AtomicLocalBackend`) is registered with mmengine.

Four places override mmengine internals that its public API does not cover
(``_init_dist_pytorch`` here, ``CheckpointHook._save_checkpoint_with_step``,
``runner._randomness_cfg``, the Runner teardown). Each calls
``require_mmengine_internals`` first, which fails loudly on an mmengine
outside the versions they were written against; :func:`apply_all` turns
that failure of fix 2 into a warning naming what will not work.
"""
import contextlib
import importlib
import os
import pickle
import warnings
from typing import Any, Iterator, List

import numpy as np
import torch

__all__ = ['MMENGINE_INTERNALS_RANGE', 'SAFE_GLOBALS_ENV', 'allowed_checkpoint_types',
           'apply_all', 'checkpoint_safe_globals', 'require_mmengine_internals']

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


_CHECKPOINT_SAFE_GLOBALS: List[Any] = []


def checkpoint_safe_globals() -> List[Any]:
    """The types a mmengine Runner checkpoint holds (fix 1), as
    ``torch.serialization.add_safe_globals`` takes them."""
    if not _CHECKPOINT_SAFE_GLOBALS:
        from mmengine.logging import HistoryBuffer
        _CHECKPOINT_SAFE_GLOBALS.extend(_numpy_pickle_globals() + [
            HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')])
    return list(_CHECKPOINT_SAFE_GLOBALS)


def user_trusted_types() -> List[Any]:
    """The ``module.Name`` types listed in ``$MMSWIFT_SAFE_GLOBALS``."""
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
    return allowed


def _add_missing(types: List[Any]) -> None:
    have = torch.serialization.get_safe_globals()
    missing = [t for t in types if t not in have]
    if missing:
        torch.serialization.add_safe_globals(missing)


def allow_mmengine_checkpoint_types() -> None:
    """Fix 1, for the whole process: ``weights_only`` loads read mmengine
    Runner checkpoints (mmengine's own ``load_checkpoint`` / resume)."""
    _add_missing(checkpoint_safe_globals())


def allow_user_trusted_types() -> List[Any]:
    """Allow the types of ``$MMSWIFT_SAFE_GLOBALS`` for the whole process."""
    allowed = user_trusted_types()
    _add_missing(allowed)
    return allowed


@contextlib.contextmanager
def allowed_checkpoint_types() -> Iterator[None]:
    """A context manager: fix 1 and ``$MMSWIFT_SAFE_GLOBALS`` for the loads
    inside the block only; torch's list of safe globals is restored on exit,
    as it was (``torch.serialization.safe_globals`` is not used: on exit it
    drops what :func:`apply_all` had allowed for the whole process).
    ``$MMSWIFT_SAFE_GLOBALS`` is read (and its errors raised) on the call."""
    extra = checkpoint_safe_globals() + user_trusted_types()
    before = list(torch.serialization.get_safe_globals())
    _add_missing(extra)
    try:
        yield
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


def init_dist_gloo_without_cuda() -> None:
    """Fix 2: ``init_dist('pytorch')`` on CPU-only machines uses gloo."""
    from mmengine.dist import utils as dist_utils
    original = dist_utils._init_dist_pytorch
    if getattr(original, '_mmswift_patched', False):
        return
    require_mmengine_internals('mmswift.compat.init_dist_gloo_without_cuda')

    def _init_dist_pytorch(backend: str = 'nccl', init_backend: str = 'torch',
                           **kwargs: Any) -> None:
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        import torch.distributed as dist
        dist.init_process_group(backend='gloo', **kwargs)

    _init_dist_pytorch._mmswift_patched = True  # type: ignore[attr-defined]
    dist_utils._init_dist_pytorch = _init_dist_pytorch


_warned_dist = False


def apply_all() -> None:
    """Apply fixes 1-3 (idempotent, cheap after the first call). On an
    mmengine whose internals fix 2 does not know, that fix is skipped with
    a warning naming what will not work; nothing raises for it."""
    global _warned_dist
    allow_mmengine_checkpoint_types()
    allow_user_trusted_types()
    from .fileio import register_atomic_backend
    register_atomic_backend()
    try:
        init_dist_gloo_without_cuda()
    except RuntimeError as e:
        if not _warned_dist:
            _warned_dist = True
            warnings.warn(f'mmswift: distributed runs on CPU-only machines (--launcher '
                          f'pytorch without CUDA) will fail in torch.cuda.set_device: '
                          f'this fix was not applied. {e}', stacklevel=2)
