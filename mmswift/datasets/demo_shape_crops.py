"""The generated shape crops as an mmengine dataset, created on first use."""
import os.path as osp
from typing import List, Optional

import numpy as np
import torch
from mmengine.dataset import BaseDataset

from mmswift.registry import DATASETS
from .shape_crops import CLASSES, ensure_shape_crops


@DATASETS.register_module()
class DemoShapeCropsDataset(BaseDataset):
    """ImageNet-layout shape crops (:mod:`mmswift.datasets.shape_crops`),
    the demo's pretraining data, read from ``meta/<split>.txt`` as
    mmpretrain reads ImageNet. If ``data_root`` holds no generated dataset,
    it is generated first with ``generate`` (keyword arguments of
    ``generate_shape_crops``).

    The pipeline ends with the image under ``img`` (mmcv's transforms); the
    dataset packs it into ``inputs`` (CHW uint8) and the label into
    ``data_samples``, which is what mmpretrain's ``PackInputs`` would do.
    """

    METAINFO = dict(classes=CLASSES)

    def __init__(self, *args, generate: Optional[dict] = None, **kwargs) -> None:
        ensure_shape_crops(kwargs['data_root'], **(generate or {}))
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        prefix = self.data_prefix.get('img_path', self.data_root)
        with open(self.ann_file) as f:
            rows = [line.rsplit(' ', 1) for line in f if line.strip()]
        return [dict(img_path=osp.join(prefix, path), gt_label=int(label))
                for path, label in rows]

    def prepare_data(self, idx: int) -> dict:
        results = super().prepare_data(idx)
        img = torch.from_numpy(np.ascontiguousarray(results['img'].transpose(2, 0, 1)))
        return dict(inputs=img, data_samples=results['gt_label'])
