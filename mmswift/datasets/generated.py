"""Writing a generated dataset safely, once.

A dataset is written into a temporary folder beside its destination and
renamed into place with a ``GENERATED`` marker, so an interrupted run never
leaves a half-written dataset and processes that generate it concurrently
(every rank of a distributed job building its dataset) all end with the
same complete one.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import DatasetExistsError

MARKER = 'GENERATED'


def sample_seed(seed: int, split_index: int, i: int) -> int:
    """The seed of sample ``i`` of a split: distinct across samples, splits
    and dataset seeds, so no two generated samples repeat one another."""
    return seed * 1_000_003 + split_index * 100_003 + i


@contextmanager
def atomic_dataset_dir(root: str, meta: dict) -> Iterator[str]:
    """Yield a temporary folder to write into; it becomes ``root`` on success."""
    root = osp.abspath(root)
    os.makedirs(osp.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.tmp-{osp.basename(root)}-', dir=osp.dirname(root))
    try:
        yield tmp
        with open(osp.join(tmp, MARKER), 'w') as f:
            json.dump(meta, f)
        try:
            os.rename(tmp, root)
        except OSError:
            if not osp.exists(osp.join(root, MARKER)):
                raise  # root exists with something else in it
    finally:
        if osp.exists(tmp):  # failed, or another process finished first
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_generated(root: str, generate: Callable[..., object], **kwargs) -> bool:
    """Run ``generate(root, **kwargs)`` unless a complete dataset is there."""
    if osp.exists(osp.join(root, MARKER)):
        return False
    if osp.exists(root) and os.listdir(root):
        raise DatasetExistsError(
            f'{root} exists but is not a complete generated dataset (no {MARKER} '
            f'marker); delete it or point data_root elsewhere')
    generate(root, **kwargs)
    return True
