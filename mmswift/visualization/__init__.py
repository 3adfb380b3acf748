"""Stage features of any image: read (inputs), extracted (extractor), drawn
(drawing) and measured (energy); the additive attention's token weights
(attention)."""
from .attention import (SOFTMAX_MESSAGE, AttentionRecorder, StageAttention, attention_maps,
                        plain_kernels, token_weights)
from .drawing import (REDUCTIONS, draw_attention, draw_attention_figure, draw_figure,
                      draw_stage, grid_row, pca_rgb, titled)
from .energy import (ObjectMasks, attention_in_mask_ratio, energy_in_mask_ratio, energy_map,
                     mass_in_mask_ratio)
from .extractor import FeatureExtractor, build_feature_extractor, crop_to_image
from .inputs import ImageReadError, collect_images, read_rgb

__all__ = ['REDUCTIONS', 'SOFTMAX_MESSAGE', 'AttentionRecorder', 'FeatureExtractor',
           'ImageReadError', 'ObjectMasks', 'StageAttention', 'attention_in_mask_ratio',
           'attention_maps', 'build_feature_extractor', 'collect_images', 'crop_to_image',
           'draw_attention', 'draw_attention_figure', 'draw_figure', 'draw_stage', 'grid_row',
           'energy_in_mask_ratio', 'energy_map', 'mass_in_mask_ratio', 'pca_rgb',
           'plain_kernels', 'read_rgb', 'titled', 'token_weights']
