from .features import (REDUCTIONS, FeatureExtractor, ImageReadError, ObjectMasks,
                       build_feature_extractor, collect_images, draw_figure, draw_stage,
                       energy_in_mask_ratio, energy_map, pca_rgb, read_rgb)

__all__ = ['REDUCTIONS', 'FeatureExtractor', 'ImageReadError', 'ObjectMasks',
           'build_feature_extractor', 'collect_images', 'draw_figure', 'draw_stage',
           'energy_in_mask_ratio', 'energy_map', 'pca_rgb', 'read_rgb']
