"""The images a visualization reads: files, folders, glob patterns; any
format OpenCV decodes, as RGB. Folders are listed by mmengine's ``scandir``
(files only, hidden ones skipped) and files decoded by ``mmcv.imread``."""
import glob
import os.path as osp
from typing import List, Optional

import numpy as np
from mmengine.utils import scandir

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(ValueError):
    """An input image that is missing or cannot be decoded."""


def collect_images(inputs: str) -> List[str]:
    """One image, every image in a folder, or a glob pattern."""
    if osp.isdir(inputs):
        paths = sorted(osp.join(inputs, p)
                       for p in scandir(inputs, suffix=IMAGE_EXTS, case_sensitive=False))
        if not paths:
            raise ImageReadError(f'{inputs}: folder holds no images ({", ".join(IMAGE_EXTS)})')
        return paths
    if any(c in inputs for c in '*?['):
        paths = sorted(glob.glob(inputs))
        if not paths:
            raise ImageReadError(f'{inputs}: pattern matches no files')
        return paths
    return [inputs]


def imread_unchanged(path: str) -> Optional[np.ndarray]:
    """The file's pixels as stored (16-bit, alpha, label values), decoded by
    OpenCV whatever mmcv's global backend; None where OpenCV cannot decode
    it (an empty or foreign file)."""
    import cv2
    import mmcv
    try:
        return mmcv.imread(path, flag='unchanged', backend='cv2')
    except cv2.error:  # an empty file
        return None


def read_rgb(path: str) -> np.ndarray:
    """An RGB uint8 image; grayscale is replicated, RGBA composited on white."""
    import cv2
    if not osp.isfile(path):
        raise ImageReadError(f'{path}: no such file')
    img = imread_unchanged(path)
    if img is None:
        raise ImageReadError(f'{path}: not a readable image')
    if img.dtype != np.uint8:  # 16-bit PNG/TIFF
        img = (img.astype(np.float32) / max(float(img.max()), 1.0) * 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        alpha = img[..., 3:].astype(np.float32) / 255
        img = (img[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
