"""Checkpoints that survive being killed.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place, deletes the
oldest checkpoint *before* writing the new one, and rewrites
``last_checkpoint`` in place. A job killed in either write leaves a
truncated file that ``--resume`` then picks. Here:

* ``AtomicLocalBackend`` (file backend ``'mmswift_atomic'``) writes every
  file to a temporary name in the same folder, fsyncs and renames it, so a
  path holds either the old complete file or the new complete one;
* ``AtomicCheckpointHook`` saves through that backend, points
  ``last_checkpoint`` at the new file only after it is complete, and only
  then removes checkpoints beyond ``max_keep_ckpts``;
* ``find_resumable_checkpoint`` is what ``tools/train.py --resume`` uses:
  the checkpoint named by ``last_checkpoint`` if it is complete, otherwise
  the newest complete one in the work dir (work dirs written by plain
  mmdet/mmseg included).
"""
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import Optional, Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..registry import HOOKS

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


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose files are never left half-written.

    Takes every argument of mmengine's hook. Local checkpoints go through
    ``AtomicLocalBackend``; other backends (``backend_args`` for s3, ...)
    are used as given. Order of one save: write the checkpoint, point
    ``last_checkpoint`` at it, then delete the oldest beyond
    ``max_keep_ckpts`` -- so at every instant the work dir holds a complete
    checkpoint that ``last_checkpoint`` names.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend=ATOMIC_BACKEND)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        from mmengine.dist import is_main_process
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_write(self.last_ckpt, osp.join(runner.work_dir, 'last_checkpoint'))
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)


# ------------------------------------------------------------- resuming
def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a complete ``torch.save`` file, or None if it is.

    ``torch.save`` writes a zip whose central directory comes last, so a
    file cut off while being written has none; reading it costs no more
    than listing the archive.
    """
    if not osp.isfile(path):
        return 'missing'
    if osp.getsize(path) == 0:
        return 'empty (0 bytes)'
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        return f'truncated or not a checkpoint ({e})'
    if not any(n.endswith('data.pkl') for n in names):
        return 'a zip file without data.pkl, not a torch.save checkpoint'
    return None


def _step_of(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` (without a path) continues from."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
        if named and not osp.isabs(named) and not osp.exists(named):
            named = osp.join(work_dir, osp.basename(named))
    if named:
        problem = checkpoint_problem(named)
        if problem is None:
            return named
        print_log(f'{pointer} names {named}, which is {problem}; looking for '
                  f'the newest complete checkpoint in {work_dir}',
                  logger='current', level=30)
    candidates = sorted(glob.glob(osp.join(work_dir, '*.pth')),
                        key=lambda p: (osp.getmtime(p), _step_of(p)), reverse=True)
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print_log(f'skipping {path}: {problem}', logger='current', level=30)
    return None
