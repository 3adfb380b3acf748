"""Stage features of any image: read (inputs), extracted (extractor), drawn
(drawing) and measured (energy)."""
from .drawing import REDUCTIONS, draw_figure, draw_stage, pca_rgb, titled
from .energy import ObjectMasks, energy_in_mask_ratio, energy_map
from .extractor import FeatureExtractor, build_feature_extractor, crop_to_image
from .inputs import ImageReadError, collect_images, read_rgb

__all__ = ['REDUCTIONS', 'FeatureExtractor', 'ImageReadError', 'ObjectMasks',
           'build_feature_extractor', 'collect_images', 'crop_to_image', 'draw_figure',
           'draw_stage', 'energy_in_mask_ratio', 'energy_map', 'pca_rgb', 'read_rgb', 'titled']
