"""Checkpoint files: the one reader, atomic writes, the newest complete one.

Every door through which a user hands mmswift a checkpoint (``init_cfg``,
``tools/test.py``, ``--resume``, ``load_from``, ``tools/convert_checkpoint.py``,
``tools/visualize_features.py --checkpoint``, ``tools/export_onnx.py``) reads
it here, so that a file that is not a checkpoint is reported as such, in one
line, and only a real checkpoint holding a genuinely disallowed type is ever
offered for allowing (``MMSWIFT_SAFE_GLOBALS``).

The file's first bytes are checked before ``torch.load`` sees it: torch
tries anything that is not a zip as a legacy pickle, and its weights_only
unpickler then reports random bytes or a JPEG as an "unsupported" object.

Writing: ``atomic_write`` and the file backend ``'mmswift_atomic'`` write
to a temporary name in the same folder, fsync and rename, so a path holds
either the old complete file or the new complete one. The backend is
registered by :func:`register_atomic_backend`, not on import.

Reading allows the types of a mmengine Runner checkpoint (and those of
``$MMSWIFT_SAFE_GLOBALS``) for its own ``torch.load`` only
(:func:`mmswift.compat.allowed_checkpoint_types`).
``find_resumable_checkpoint`` is what ``tools/train.py --resume`` uses: the
checkpoint named by ``last_checkpoint`` if it is complete, otherwise the
newest complete one in the work dir (work dirs of plain mmdet/mmseg too).
"""
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import Optional, Tuple, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import print_log

from .errors import CheckpointError, CheckpointNotFoundError

# torch.save's legacy (non-zip) format starts with this pickled magic number
_LEGACY_TORCH_MAGIC = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'
_OTHER_FORMATS = (
    (b'\x89PNG\r\n\x1a\n', 'a PNG image'), (b'\xff\xd8\xff', 'a JPEG image'),
    (b'GIF8', 'a GIF image'), (b'BM', 'a BMP image'), (b'%PDF', 'a PDF document'),
    (b'\x1f\x8b', 'a gzip archive'), (b'BZh', 'a bzip2 archive'),
    (b'\xfd7zXZ', 'an xz archive'), (b'\x89HDF', 'an HDF5 file (Keras/TF weights?)'),
    (b'<', 'an HTML/XML page (a download that returned an error page?)'))


def _kind(head: bytes) -> Optional[str]:
    for magic, kind in _OTHER_FORMATS:
        if head.startswith(magic):
            return kind
    return None


def _is_safetensors(path: str, head: bytes) -> bool:
    if len(head) < 9 or head[8:9] != b'{':
        return False
    return int.from_bytes(head[:8], 'little') + 8 <= osp.getsize(path)


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be a complete checkpoint, or None if it may be.

    Reads only the first bytes and, for a zip, its directory: cheap enough
    to run over every ``*.pth`` of a work dir. ``torch.save`` writes a zip
    whose directory comes last, so a file cut off while being written has
    none.
    """
    if not osp.exists(path):
        return 'missing'
    if osp.isdir(path):
        return 'a folder, not a file'
    size = osp.getsize(path)
    if size == 0:
        return 'empty (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(16)
    if path.endswith('.safetensors'):
        return None if _is_safetensors(path, head) else \
            f'not a safetensors file (or truncated: {size} bytes)'
    if head.startswith(_LEGACY_TORCH_MAGIC):
        return None
    if head.startswith(b'PK'):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return f'truncated: a zip archive whose directory is missing ({size} bytes)'
        if not any(n.endswith('data.pkl') for n in names):
            return 'a zip archive without data.pkl, not a torch.save checkpoint'
        return None
    if _is_safetensors(path, head):
        return None
    kind = _kind(head)
    return (f'{kind}, not a checkpoint' if kind else
            f'not a checkpoint (neither torch.save nor safetensors: it starts with bytes '
            f'{head[:8].hex(" ")})')


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f'{type(e).__name__}: {text[0]}' if text else type(e).__name__


def disallowed_global(error: BaseException) -> Optional[Tuple[str, bool]]:
    """``(module.Name, blocked)`` when weights_only loading refused a global,
    None for every other failure. ``blocked``: its module (os, subprocess,
    ...) is one torch never unpickles from, allowed or not."""
    text = str(error)
    if 'Weights only load failed' not in text:
        return None
    m = re.search(r'unsupported GLOBAL ([\w.]+) whose module [\w.]+ is blocked', text)
    if m:
        return m.group(1), True
    m = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text) or \
        re.search(r'GLOBAL ([\w.]+) was not an allowed global', text)
    return (m.group(1), False) if m else None


def unsafe_checkpoint_message(path: str, name: str, blocked: bool = False) -> str:
    from .compat import SAFE_GLOBALS_ENV
    if blocked:
        return (f'checkpoint {path} contains {name}, which torch.load(weights_only=True) '
                f'never unpickles: loading it would run code. A checkpoint has no reason '
                f'to hold it; do not use this file, get the weights from their source again')
    return (f'checkpoint {path} contains {name}, which torch.load(weights_only=True) '
            f'refuses because unpickling it could run code. If you trust this file, '
            f'allow that type explicitly: {SAFE_GLOBALS_ENV}={name} '
            f'(environment variable, comma-separated) or '
            f'torch.serialization.add_safe_globals([{name}]) in Python')


def read_checkpoint(path: str, map_location: str = 'cpu', what: str = 'checkpoint',
                    mmap: bool = False) -> dict:
    """Load a ``.pth``/``.bin``/``.safetensors`` file (weights only), or the
    weights file of a HuggingFace model folder, or a URL through mmengine.

    Raises :class:`CheckpointNotFoundError` / :class:`CheckpointError` with
    one line naming ``what`` (the flag or setting the path came from), the
    path and the fix. ``mmap`` maps tensors instead of reading them, for
    checks that only look at keys and shapes.
    """
    import torch
    if '://' in path:  # mmengine's hub/url schemes (http://, s3://, ...)
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(path, map_location=map_location)
    if osp.isdir(path):
        for name in ('model.safetensors', 'pytorch_model.bin'):
            if osp.isfile(osp.join(path, name)):
                return read_checkpoint(osp.join(path, name), map_location, what=what, mmap=mmap)
        raise CheckpointError(
            f'{what}: folder {path} has neither model.safetensors nor pytorch_model.bin; '
            f'give the path of a checkpoint file')
    problem = checkpoint_problem(path)
    if problem == 'missing':
        hint = (f' (fix the path in the config, or override it with --cfg-options '
                f'{what}=PATH)' if '.' in what else '')
        if osp.basename(path).endswith('_demo-shape-crops.pth'):
            hint += '; python tools/pretrain_demo.py writes the demo\'s pretrained backbone there'
        raise CheckpointNotFoundError(f'{what}: checkpoint not found: {path}{hint}')
    if problem:
        raise CheckpointError(f'{what}: {path} is {problem}; give a checkpoint written by '
                              f'torch.save or safetensors (copy or download it again if it '
                              f'should be one)')
    from .compat import allowed_checkpoint_types
    allowed = allowed_checkpoint_types()  # reads $MMSWIFT_SAFE_GLOBALS: its errors are its own
    try:
        with open(path, 'rb') as f:
            head = f.read(16)
        if _is_safetensors(path, head) and not head.startswith(b'PK'):
            from safetensors.torch import load_file
            return load_file(path, device=map_location)
        with allowed:
            try:
                return torch.load(path, map_location=map_location, weights_only=True,
                                  mmap=mmap and head.startswith(b'PK'))
            except RuntimeError as e:
                if mmap and 'mmap' in str(e):  # e.g. zips written without alignment
                    return torch.load(path, map_location=map_location, weights_only=True)
                raise
    except Exception as e:  # a damaged archive fails anywhere in the unpickler
        refused = disallowed_global(e)
        if refused:  # a complete checkpoint, with a type we do not unpickle
            raise CheckpointError(f'{what}: {unsafe_checkpoint_message(path, *refused)}') from e
        raise CheckpointError(
            f'{what}: cannot read {path}: it is damaged or not a checkpoint '
            f'({_first_line(e)}); copy or download it again') from e


# --------------------------------------------------------------- writing
ATOMIC_BACKEND = 'mmswift_atomic'


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(data: Union[bytes, str], path: str) -> None:
    """Write ``data`` to ``path`` so that a reader (or a crash) never sees
    a partial file: temporary file, fsync, ``os.replace``."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.',
                               suffix='.tmp')
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode('utf-8') if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, with atomic ``put`` / ``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def register_atomic_backend() -> None:
    """Register ``'mmswift_atomic'`` with mmengine's file backends (once;
    :func:`mmswift.compat.apply_all` and ``AtomicCheckpointHook`` call it,
    importing this module does not)."""
    from mmengine.fileio.backends.registry_utils import backends
    if backends.get(ATOMIC_BACKEND) is not AtomicLocalBackend:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


# -------------------------------------------------------------- resuming
def _step_of(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from: the one
    mmengine's ``find_latest_checkpoint`` reads from ``last_checkpoint``,
    if :func:`checkpoint_problem` finds it complete, otherwise the newest
    complete ``*.pth`` in ``work_dir`` (mmengine would hand the Runner a
    file cut off mid-write, or none when the pointer itself was cut off)."""
    from mmengine.runner import find_latest_checkpoint
    named = find_latest_checkpoint(work_dir) or None
    if named and not osp.isabs(named) and not osp.exists(named):
        named = osp.join(work_dir, osp.basename(named))
    if named:
        problem = checkpoint_problem(named)
        if problem is None:
            return named
        print_log(f'{osp.join(work_dir, "last_checkpoint")} names {named}, which is {problem}; '
                  f'looking for the newest complete checkpoint in {work_dir}',
                  logger='current', level=30)
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')),
                        key=lambda p: (osp.getmtime(p), _step_of(p)), reverse=True)
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print_log(f'skipping {path}: {problem}', logger='current', level=30)
    return None
