"""mmdet's RoI extractor with a RoIAlign that is fast on CPU.

mmcv's CPU RoIAlign loops over RoIs, channels and sample points one float at
a time, on one thread: in Mask R-CNN predict at 800x1344 its 1,000 proposals
took 0.6-1.4 s, as long as the whole SwiftFormer-L1 backbone. Every sample
point of RoIAlign is a weighted sum of four feature-map pixels, and a bin is
the mean of its sample points, so a bin is a weighted sum of pixels: one
``F.embedding_bag`` (sum, per-sample weights) over the ``H*W x C`` pixel
rows computes all bins at once, reading each pixel as one contiguous C-vector
(multi-threaded, vectorised). The coordinates, the sample counts and the
border rules are mmcv's, computed in the same float order.

On CUDA, with max pooling, in other dtypes or while tracing (ONNX), mmcv's own
op runs.
"""
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.ops import RoIAlign as MMCVRoIAlign
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor as MMDetSingleRoIExtractor

from mmswift.registry import MODELS

# Taps (pixel reads) per embedding_bag call: 4M is 48 MB of indices and
# weights, whatever the RoI sizes (a 50x50 sampling grid per bin is possible).
MAX_TAPS_PER_CALL = 4 * 2**20


def _axis_taps(start: torch.Tensor, bin_size: torch.Tensor, pooled: int, grid: int,
               size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel indices and weights along one axis, as mmcv's ``pre_calc``:
    ``k x pooled x grid x 2`` (low and high neighbour)."""
    dt = start.dtype
    p = torch.arange(pooled, dtype=dt)[:, None]
    s = torch.arange(grid, dtype=dt) + 0.5
    # start + p * bin + (s * bin) / grid, in mmcv's order of operations
    c = start[:, None, None] + p * bin_size[:, None, None] + s * bin_size[:, None, None] / grid
    inside = (c >= -1.0) & (c <= size)
    c = c.clamp(min=0)
    low = c.floor().long().clamp(max=size - 1)
    # at the last pixel both neighbours are that pixel (mmcv moves c onto it
    # instead; the weights sum to one either way)
    high = (low + 1).clamp(max=size - 1)
    frac = c - low
    weights = torch.stack([1 - frac, frac], -1) * inside[..., None]
    return torch.stack([low, high], -1), weights


def roi_align_rows(feat: torch.Tensor, rois: torch.Tensor, output_size: Tuple[int, int],
                   spatial_scale: float, sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """mmcv's average RoIAlign of ``feat`` (N x C x H x W) over ``rois``
    (K x 5: batch index, x1, y1, x2, y2), computed as embedding bags.

    Returns K x C x ph x pw in channels_last memory; differentiable in
    ``feat`` only: like mmcv's op, no gradient reaches the boxes.
    """
    rois = rois.detach()
    n, c, h, w = feat.shape
    ph, pw = output_size
    rows = feat.permute(0, 2, 3, 1).reshape(-1, c).contiguous()
    out = feat.new_zeros(rois.shape[0], ph, pw, c)
    offset = 0.5 if aligned else 0.0
    batch = rois[:, 0].long()
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    roi_w, roi_h = rois[:, 3] * spatial_scale - offset - x1, rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    elif bool(((roi_w < 0) | (roi_h < 0)).any()):  # as mmcv's kernels refuse them
        bad = int(((roi_w < 0) | (roi_h < 0)).nonzero()[0])
        raise ValueError(f'RoIAlign(aligned=True): RoI {bad} {rois[bad, 1:].tolist()} has a '
                         f'negative width or height (x2 < x1 or y2 < y1); boxes must be '
                         f'x1, y1, x2, y2 with x2 >= x1 and y2 >= y1')
    bin_h, bin_w = roi_h / ph, roi_w / pw
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(batch, sampling_ratio)
    else:  # adaptive: ceil(roi size / bins) samples per bin and axis
        grid_h, grid_w = torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()
    # RoIs with the same sampling grid share one index layout
    grids = torch.stack([grid_h, grid_w], 1)
    for gh, gw in torch.unique(grids, dim=0).tolist():
        if gh <= 0 or gw <= 0:  # an empty RoI: no samples, zeros (as mmcv)
            continue
        members = ((grids[:, 0] == gh) & (grids[:, 1] == gw)).nonzero().squeeze(1)
        taps_per_roi = ph * pw * gh * gw * 4
        for chunk in members.split(max(1, MAX_TAPS_PER_CALL // taps_per_roi)):
            k = chunk.numel()
            iy, wy = _axis_taps(y1[chunk], bin_h[chunk], ph, gh, h)
            ix, wx = _axis_taps(x1[chunk], bin_w[chunk], pw, gw, w)
            # k x ph x pw x gh x gw x 2 (y) x 2 (x): one bag per bin
            index = (batch[chunk].view(k, 1, 1, 1, 1, 1, 1) * (h * w)
                     + iy.view(k, ph, 1, gh, 1, 2, 1) * w + ix.view(k, 1, pw, 1, gw, 1, 2))
            weight = wy.view(k, ph, 1, gh, 1, 2, 1) * wx.view(k, 1, pw, 1, gw, 1, 2) / (gh * gw)
            bins = F.embedding_bag(index.reshape(-1, gh * gw * 4), rows, mode='sum',
                                   per_sample_weights=weight.reshape(-1, gh * gw * 4))
            out[chunk] = bins.view(k, ph, pw, c)
    return out.permute(0, 3, 1, 2)


class RoIAlign(MMCVRoIAlign):
    """mmcv's ``RoIAlign``, computed by :func:`roi_align_rows` on CPU."""

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if (input.device.type != 'cpu' or self.pool_mode != 'avg' or self.use_torchvision
                or input.dtype not in (torch.float32, torch.float64)
                or torch.jit.is_tracing() or torch.jit.is_scripting()):
            # mmcv's kernels index NCHW memory whatever the strides say
            return super().forward(input.contiguous(), rois)
        return roi_align_rows(input, rois.to(input.dtype), self.output_size, self.spatial_scale,
                              self.sampling_ratio, self.aligned)


@MODELS.register_module()
class SingleRoIExtractor(MMDetSingleRoIExtractor):
    """mmdet's ``SingleRoIExtractor``; ``roi_layer=dict(type='RoIAlign')``
    builds :class:`RoIAlign` (same arguments, same results)."""

    def build_roi_layers(self, layer_cfg: dict, featmap_strides: List[int]) -> nn.ModuleList:
        if layer_cfg.get('type') == 'RoIAlign':
            layer_cfg = dict(layer_cfg, type=RoIAlign)
        return super().build_roi_layers(layer_cfg, featmap_strides)
