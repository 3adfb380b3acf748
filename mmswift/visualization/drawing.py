"""Feature maps drawn over the image at its own resolution, with mmengine's
``Visualizer.draw_featmap`` (JET heatmaps blended with ``alpha``, the
ecosystem's convention), or as the first three principal components."""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

REDUCTIONS = ('mean', 'max', 'topk', 'pca')


def resize_maps(maps: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    return F.interpolate(maps[None], size=hw, mode='bilinear', align_corners=False)[0]


def pca_rgb(feat: torch.Tensor) -> torch.Tensor:
    """The first three principal components of the channels, as 3 x h x w in [0, 1]."""
    c, h, w = feat.shape
    x = feat.reshape(c, -1).T
    x = x - x.mean(0, keepdim=True)
    q = min(3, c, x.shape[0])
    _, _, v = torch.pca_lowrank(x, q=q, center=False)
    comps = (x @ v[:, :q]).T.reshape(q, h, w)
    if q < 3:
        comps = torch.cat([comps, comps.new_zeros(3 - q, h, w)])
    lo = comps.flatten(1).min(1)[0][:, None, None]
    hi = comps.flatten(1).max(1)[0][:, None, None]
    return (comps - lo) / (hi - lo).clamp_min(1e-12)


def draw_stage(rgb: np.ndarray, feat: torch.Tensor, reduction: str = 'mean',
               topk: int = 8, alpha: float = 0.5) -> np.ndarray:
    """One feature map over the image, at the image's resolution."""
    from mmengine.visualization import Visualizer
    h, w = rgb.shape[:2]
    if reduction == 'mean':
        m = resize_maps(feat.mean(0, keepdim=True), (h, w))
        return Visualizer.draw_featmap(m, rgb, channel_reduction=None, topk=0, alpha=alpha)
    if reduction == 'max':  # draw_featmap's select_max: the channel of largest sum
        idx = int(feat.sum(dim=(1, 2)).argmax())
        m = resize_maps(feat[idx:idx + 1], (h, w))
        return Visualizer.draw_featmap(m, rgb, channel_reduction=None, topk=0, alpha=alpha)
    if reduction == 'topk':  # a grid of the top-k channels, each over a small image
        cols = int(np.ceil(np.sqrt(topk)))
        rows = int(np.ceil(topk / cols))
        scale = min(1.0, 256 / max(h, w))
        tile = (max(1, int(h * scale)), max(1, int(w * scale)))
        return Visualizer.draw_featmap(feat, rgb, channel_reduction=None, topk=topk,
                                       arrangement=(rows, cols), resize_shape=tile,
                                       alpha=alpha)
    if reduction == 'pca':
        colours = (resize_maps(pca_rgb(feat), (h, w)).permute(1, 2, 0).numpy() * 255)
        return (rgb * (1 - alpha) + colours * alpha).astype(np.uint8)
    raise ValueError(f'reduction {reduction!r}; expected one of {REDUCTIONS}')


def titled(img: np.ndarray, title: str, height: int, width: Optional[int] = None) -> np.ndarray:
    """``img`` scaled to ``height`` under a title bar. With ``width`` the panel
    is exactly that wide (the image fitted inside, centred on white), so that
    panels line up in a grid; the title's font shrinks until it fits."""
    import cv2
    scale = height / img.shape[0]
    if width is not None:
        scale = min(scale, width / img.shape[1])
    size = (max(1, int(round(img.shape[1] * scale))), max(1, int(round(img.shape[0] * scale))))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    width = width or img.shape[1]
    top, left = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    panel = np.full((height, width, 3), 255, np.uint8)
    panel[top:top + img.shape[0], left:left + img.shape[1]] = img
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.55
    while font_scale > 0.25 and cv2.getTextSize(title, font, font_scale, 1)[0][0] > width - 8:
        font_scale -= 0.05
    bar = np.full((28, width, 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 20), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, panel], 0)


def draw_figure(rgb: np.ndarray, feats: Sequence[torch.Tensor], strides: Sequence[int],
                stages: Sequence[int], reduction: str = 'mean', topk: int = 8,
                alpha: float = 0.5, after_neck: bool = False,
                height: Optional[int] = None) -> np.ndarray:
    """The input beside the chosen stages' drawings, in a row.

    ``height`` defaults to the image's own height (capped at 1024 for the
    figure; each panel is drawn at the input's resolution first)."""
    height = height or min(rgb.shape[0], 1024)
    panels = [titled(rgb, 'input', height)]
    name = 'FPN level' if after_neck else 'stage'
    for s in stages:
        drawn = draw_stage(rgb, feats[s], reduction, topk, alpha)
        panels.append(titled(drawn, f'{name} {s + 1} (stride {strides[s]}), {reduction}', height))
    gap = np.full((height + 28, 6, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, 1)


def draw_attention(rgb: np.ndarray, weights: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """The magnitude of one stage's additive attention weights (h x w or
    1 x h x w, signed) over the image, at the image's resolution, with
    ``draw_featmap`` (its min-max scaling: the colours are relative)."""
    from mmengine.visualization import Visualizer
    w = weights.float().reshape(-1, *weights.shape[-2:])[:1]
    m = resize_maps(w.abs(), rgb.shape[:2])
    return Visualizer.draw_featmap(m, rgb, channel_reduction=None, topk=0, alpha=alpha)


def draw_attention_figure(rgb: np.ndarray, maps: Sequence, alpha: float = 0.5,
                          height: Optional[int] = None,
                          width: Optional[int] = None) -> np.ndarray:
    """The input beside each stage's attention-weight magnitude, in a row
    (``maps``: :class:`~mmswift.visualization.StageAttention` of the image,
    none of the constant form)."""
    height = height or min(rgb.shape[0], 1024)
    panels = [titled(rgb, 'input', height, width)]
    for m in maps:
        panels.append(titled(draw_attention(rgb, m.weights, alpha),
                             f'stage {m.stage + 1} (stride {m.stride}), |attention|',
                             height, width))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [gap, p]
    return np.concatenate(row, 1)


def grid_row(panels, gap: int = 4) -> np.ndarray:
    """Panels of one height side by side, with white gaps right and below
    (a row of a gallery figure)."""
    h = panels[0].shape[0]
    white = np.full((h, gap, 3), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (p, white)], 1)
    return np.concatenate([row, np.full((gap, row.shape[1], 3), 255, np.uint8)], 0)
