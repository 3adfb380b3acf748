"""Generated demo datasets. Importing this package imports mmdet and mmseg;
the generators themselves (``shapes_coco``, ``scenes_ade``, ``shape_crops``)
need neither."""
from .demo_scenes import DemoScenesDataset
from .demo_shape_crops import DemoShapeCropsDataset
from .demo_shapes import DemoShapesDataset

__all__ = ['DemoShapesDataset', 'DemoScenesDataset', 'DemoShapeCropsDataset']
