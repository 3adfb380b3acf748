"""Check a config's datasets before training starts, not three hours in.

``tools/train.py`` checks the train and val datasets, ``tools/test.py``
the test dataset (``--skip-data-check`` turns it off). Every problem is
one ``DatasetError`` line: what is wrong, which path, what to do.

Decision on bad images: a sample whose image (or label PNG) is missing,
empty, unreadable, or whose label size differs from its image, stops the
job *before training* with a count, the first few paths, and the full list
written to ``<work_dir>/bad_files_<split>.txt``. Skipping silently would
train on a different dataset than the one reported; crashing mid-epoch
would lose the work done.
"""
import json
import os
import os.path as osp
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError


def _leaf_datasets(ds, label: str) -> Iterator[Tuple[dict, str]]:
    """Dataset configs inside wrappers (Concat, Repeat, ClassBalanced...)."""
    if not isinstance(ds, dict):
        return
    if 'datasets' in ds:
        for i, d in enumerate(ds['datasets']):
            yield from _leaf_datasets(d, f'{label}.datasets[{i}]')
    elif isinstance(ds.get('dataset'), dict):
        yield from _leaf_datasets(ds['dataset'], f'{label}.dataset')
    else:
        yield ds, label


def _join(root: Optional[str], path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    return path if (osp.isabs(path) or not root) else osp.join(root, path)


def _layout(ds: dict) -> str:
    root = ds.get('data_root') or '.'
    prefix = ds.get('data_prefix') or {}
    parts = []
    if ds.get('ann_file'):
        parts.append(_join(root, ds['ann_file']))
    img = prefix.get('img') or prefix.get('img_path')
    if img is not None:
        parts.append(f'images under {_join(root, img) or root}/')
    if prefix.get('seg_map_path') is not None:
        parts.append(f'label PNGs under {_join(root, prefix["seg_map_path"])}/')
    return ', '.join(parts) or f'the files the dataset type {ds.get("type")} reads'


def _coco_problem(path: str) -> Optional[str]:
    """What makes ``path`` not a COCO instances file, or None."""
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        return f'is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})'
    except (OSError, UnicodeDecodeError) as e:
        return f'cannot be read ({e})'
    if not isinstance(data, dict):
        return f'is not a COCO instances file (top level is a {type(data).__name__})'
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            return f'is not a COCO instances file (no "{key}" list)'
    for i, im in enumerate(data['images']):
        missing = [k for k in ('id', 'file_name', 'width', 'height')
                   if not isinstance(im, dict) or k not in im]
        if missing:
            return f'is not a COCO instances file (images[{i}] lacks {missing})'
    for i, ann in enumerate(data['annotations']):
        if not isinstance(ann, dict) or not all(
                k in ann for k in ('image_id', 'category_id', 'bbox')):
            return (f'is not a COCO instances file (annotations[{i}] lacks '
                    f'image_id, category_id or bbox)')
        if not (isinstance(ann['bbox'], list) and len(ann['bbox']) == 4):
            return f'is not a COCO instances file (annotations[{i}].bbox is {ann["bbox"]!r})'
    return None


def _image_size(path: str, decode: bool = False
                ) -> Tuple[Optional[Tuple[int, int]], Optional[str]]:
    """(width, height) from the file header, or a problem. With ``decode``
    the whole image is decoded, which also finds files cut off after their
    header (the header check passes those, and OpenCV later decodes the part
    that is there without complaint)."""
    if not osp.isfile(path):
        return None, 'missing'
    if osp.getsize(path) == 0:
        return None, 'empty (0 bytes)'
    try:
        with Image.open(path) as im:
            if decode:
                im.load()
            return im.size, None
    except (UnidentifiedImageError, OSError) as e:
        if decode and 'truncated' in str(e):
            return None, 'truncated (the image data ends early)'
        return None, f'not a readable image ({type(e).__name__})'


def _sample_problem(info: dict, decode: bool = False) -> Optional[str]:
    img_size, problem = _image_size(info['img_path'], decode)
    if problem:
        return f'{info["img_path"]}: {problem}'
    seg = info.get('seg_map_path')
    if seg:
        seg_size, problem = _image_size(seg, decode)
        if problem:
            return f'{seg}: label {problem}'
        if seg_size != img_size:
            return (f'{seg}: label is {seg_size[0]}x{seg_size[1]} but its image '
                    f'{info["img_path"]} is {img_size[0]}x{img_size[1]}')
    return None


def _build(ds: dict, label: str, config: str):
    from mmengine.registry import DATASETS
    try:
        return DATASETS.build(ds)
    except Exception as e:  # explain the causes we know, else the original
        ann = _join(ds.get('data_root'), ds.get('ann_file'))
        if ann and ann.endswith('.json'):
            problem = _coco_problem(ann)
            if problem:
                raise DatasetError(
                    f'annotation file {ann} ({label}.ann_file in {config}) '
                    f'{problem}; re-download it or restore the edited file') from e
        raise


def check_dataset(ds: dict, label: str, config: str, split: str,
                  work_dir: Optional[str] = None, threads: int = 8, full: bool = False) -> int:
    """Check one (unwrapped) dataset config; returns the number of samples.
    ``full``: decode every image instead of reading its header."""
    root = ds.get('data_root')
    fix = f'put the dataset there or set --cfg-options {label}.data_root=PATH'
    if root and not ds.get('generate'):  # demo datasets write their own files
        if not osp.isdir(root):
            raise DatasetError(f'dataset root {root} ({label}.data_root in {config}) '
                               f'does not exist; expected {_layout(ds)}; {fix}')
        if not os.listdir(root):
            raise DatasetError(f'dataset root {root} ({label}.data_root in {config}) '
                               f'is empty; expected {_layout(ds)}; {fix}')
    ann = _join(root, ds.get('ann_file'))
    if ann and not osp.isfile(ann) and not ds.get('generate'):
        raise DatasetError(f'annotation file {ann} ({label}.ann_file in {config}) not '
                           f'found; expected {_layout(ds)}; {fix}')
    dataset = _build(ds, label, config)
    n = len(dataset)
    if n == 0:
        raise DatasetError(f'{label} in {config} has no samples; expected '
                           f'{_layout(ds)}')
    start = time.time()
    infos = (dataset.get_data_info(i) for i in range(n))
    with ThreadPoolExecutor(threads) as pool:
        bad: List[str] = [p for p in pool.map(partial(_sample_problem, decode=full), infos) if p]
    print_log(f'checked the files of {n} samples of {label} in '
              f'{time.time() - start:.1f} s: {len(bad)} bad', logger='current')
    if bad:
        listing = ''
        if work_dir:
            os.makedirs(work_dir, exist_ok=True)
            listing = osp.join(work_dir, f'bad_files_{split}.txt')
            with open(listing, 'w') as f:
                f.write('\n'.join(bad) + '\n')
            listing = f'; all of them are listed in {listing}'
        source = ann or _layout(ds)
        raise DatasetError(
            f'{len(bad)} of {n} samples of {label} have missing or unreadable files '
            f'(first: {"; ".join(bad[:3])}){listing}. Nothing was trained: restore '
            f'the files or remove those samples from {source}')
    return n


def check_datasets(cfg: Config, splits=('train', 'val'), config: str = 'the config',
                   work_dir: Optional[str] = None, full: bool = False) -> int:
    """Check every dataset of ``{split}_dataloader``; returns the sample count.
    ``full`` decodes every image (``--full-data-check``)."""
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    total = 0
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for ds, label in _leaf_datasets(loader.get('dataset'),
                                        f'{split}_dataloader.dataset'):
            total += check_dataset(ds, label, config, split, work_dir, full=full)
    return total
