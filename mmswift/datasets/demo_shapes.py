"""mmdet's CocoDataset over the generated shapes, created on first use."""
from typing import Optional

from mmdet.datasets import CocoDataset

from mmswift.registry import DATASETS
from .shapes_coco import CLASSES, ensure_shapes_coco


@DATASETS.register_module()
class DemoShapesDataset(CocoDataset):
    """COCO-format shapes (:mod:`mmswift.datasets.shapes_coco`).

    If ``data_root`` holds no generated dataset yet, it is generated there
    first with ``generate`` (keyword arguments of ``generate_shapes_coco``),
    so a demo config runs on a fresh machine with nothing to download.
    """

    METAINFO = dict(
        classes=CLASSES,
        palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 225, 25),
                 (145, 30, 180)])

    def __init__(self, *args, generate: Optional[dict] = None, **kwargs) -> None:
        ensure_shapes_coco(kwargs['data_root'], **(generate or {}))
        super().__init__(*args, **kwargs)
