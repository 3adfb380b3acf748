"""``CheckpointHook`` whose files are never left half-written.

mmengine's ``CheckpointHook`` writes ``epoch_N.pth`` in place, deletes the
oldest checkpoint *before* writing the new one, and rewrites
``last_checkpoint`` in place. A job killed in either write leaves a
truncated file that ``--resume`` then picks.
"""
import os.path as osp

from mmengine.hooks import CheckpointHook

from ...compat import apply_all, require_mmengine_internals
from ...errors import CheckpointWriteError
from ...fileio import ATOMIC_BACKEND, atomic_write, find_resumable_checkpoint
from ...registry import HOOKS


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` whose files are never left half-written.

    Takes every argument of mmengine's hook. Local checkpoints go through
    ``AtomicLocalBackend``; other backends (``backend_args`` for s3, ...)
    are used as given. Order of one save: write the checkpoint, point
    ``last_checkpoint`` at it, then delete the oldest beyond
    ``max_keep_ckpts`` -- so at every instant the work dir holds a complete
    checkpoint that ``last_checkpoint`` names. A failed write (disk full, I/O
    error, permission lost) stops training with :class:`CheckpointWriteError`
    naming the file, the error and the last good checkpoint.
    """

    def __init__(self, *args, **kwargs) -> None:
        apply_all()  # the Runner is built from an mmswift config: see mmswift.compat
        require_mmengine_internals('AtomicCheckpointHook._save_checkpoint_with_step')
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
        path = self.file_backend.join_path(self.out_dir, ckpt_filename)
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        try:
            runner.save_checkpoint(
                self.out_dir, ckpt_filename, self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
            self.last_ckpt = path
            runner.message_hub.update_info('last_ckpt', path)
            if not is_main_process():
                return
            atomic_write(path, pointer)
        except OSError as e:
            raise CheckpointWriteError(
                f'could not write {path if self.last_ckpt != path else pointer}: '
                f'{e.strerror or e} (errno {e.errno}); nothing was overwritten, no temporary '
                f'file is left, and the last good checkpoint is '
                f'{find_resumable_checkpoint(runner.work_dir) or "none yet"}; free space or '
                f'restore write access, then train with --resume') from e
        if outdated is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)
