"""Where SwiftFormer's additive attention looks: the per-token weights of the
global query, per stage.

In ``EfficientAdditiveAttention`` each token ``t`` gets a query
``q_t = normalize(W_q x_t + b_q)`` and a score ``s_t = (q_t . w_g) * scale``;
with ``attn_norm='l2'`` the scores are L2-normalised over all the tokens of
the image, ``a_t = s_t / ||s||``, and the global query is
``G = sum_t a_t q_t``. The ``a_t`` (signed; their magnitude says how much a
token contributes to ``G``) are the map. With ``attn_norm='softmax'`` (the
pre-July-2023 code and the transformers port) the softmax runs over a
size-1 axis, so every ``a_t`` is exactly 1: constant by construction, no map.

The weights are computed from the attention's own input, caught by a
forward hook on ``stages[i].blocks[-1].attn`` while the backbone runs with
``kernels='plain'`` (the fast inference forms of ``kernels='auto'`` do not
call the attention's ``forward()``); the previous setting is restored after.
The deploy form keeps ``to_query`` and ``w_g``, so the maps come out the
same in the training, eval and deploy forms.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

SOFTMAX_MESSAGE = ("attn_norm='softmax': every token weight is exactly 1 (a softmax over a "
                   "size-1 axis), constant by construction; there is no attention map to draw")


@dataclass
class StageAttention:
    """The additive attention of one stage (its last block).

    Attributes:
        stage: 0-based stage index (0 = stride 4).
        weights: the signed per-token weights ``a_t``, B x H_i x W_i at the
            stage's resolution (over the whole input given, padding included).
        form: ``'l2'`` or ``'softmax'``.
        stride: the stage's stride relative to the input.
        constant: True when the weights are constant by construction
            (``'softmax'``); ``message`` then says so.
        message: one line for the constant form, else ``''``.
    """
    stage: int
    weights: torch.Tensor
    form: str
    stride: int
    constant: bool = False
    message: str = ''

    @property
    def magnitude(self) -> torch.Tensor:
        """``|a_t|``: how much each token contributes to the global query."""
        return self.weights.abs()

    def crop(self, input_width: int, img_shape) -> 'StageAttention':
        """The part covering the image, not the padding (stride recomputed
        from ``input_width`` as for the features)."""
        from .extractor import crop_to_image
        weights, stride = crop_to_image(self.weights, input_width, img_shape)
        return StageAttention(self.stage, weights, self.form, stride, self.constant,
                              self.message)


def find_swiftformer(model: nn.Module) -> nn.Module:
    """The SwiftFormer of a bare backbone, a det/seg model or a wrapped one."""
    from mmengine.model import is_model_wrapper

    from mmswift.models import SwiftFormer
    model = model.module if is_model_wrapper(model) else model
    backbone = model if isinstance(model, SwiftFormer) else getattr(model, 'backbone', None)
    if not isinstance(backbone, SwiftFormer):
        raise TypeError(f'attention maps need a SwiftFormer backbone (or a model whose '
                        f'.backbone is one), got {type(backbone or model).__name__}')
    return backbone


def token_weights(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The per-token weights ``a_t`` (B x H x W) that ``attn`` (an
    ``EfficientAdditiveAttention``) gives its input ``x`` (B x C x H x W)."""
    query = F.normalize(F.conv2d(x, attn.to_query.weight[:, :, None, None],
                                 attn.to_query.bias), dim=1)
    scores = F.conv2d(query, attn.w_g.t()[:, :, None, None]) * attn.scale_factor
    if attn.attn_norm == 'l2':
        return (scores / scores.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None])[:, 0]
    return scores.softmax(dim=1)[:, 0]  # over a size-1 axis: all ones


@contextmanager
def plain_kernels(backbone: nn.Module) -> Iterator[None]:
    """``backbone.kernels = 'plain'`` inside, the previous setting after."""
    previous = backbone.kernels
    backbone.kernels = 'plain'
    try:
        yield
    finally:
        backbone.kernels = previous


class AttentionRecorder:
    """Inside ``with``: every forward of the model records the additive
    attention weights of the chosen stages (``maps[stage]``, the latest
    forward's, detached). Use it around any forward (a bare backbone, mmdet's
    ``inference_detector``, a training-time hook)."""

    def __init__(self, model: nn.Module, stages: Optional[Sequence[int]] = None) -> None:
        self.backbone = find_swiftformer(model)
        n = len(self.backbone.stages)
        self.stages = list(range(n)) if stages is None else \
            [s + n if s < 0 else s for s in stages]
        for s in self.stages:
            if not 0 <= s < n:
                raise IndexError(f'stage {s}: the backbone has stages 0..{n - 1}')
        self.maps: Dict[int, StageAttention] = {}
        self._handles: List = []
        self._plain = None

    def _hook(self, stage: int):
        def hook(module, args, output):
            x = args[0]
            with torch.no_grad():
                w = token_weights(module, x.detach()).float()
            constant = module.attn_norm == 'softmax'
            self.maps[stage] = StageAttention(stage, w, module.attn_norm, 1, constant,
                                              SOFTMAX_MESSAGE if constant else '')
        return hook

    def __enter__(self) -> 'AttentionRecorder':
        self.maps.clear()
        self._plain = plain_kernels(self.backbone)
        self._plain.__enter__()
        try:
            for s in self.stages:
                attn = self.backbone.stages[s].blocks[-1].attn
                self._handles.append(attn.register_forward_hook(self._hook(s)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._plain is not None:
            self._plain.__exit__(None, None, None)
            self._plain = None

    def results(self, input_width: int) -> List[StageAttention]:
        """The recorded stages in order, strides set from the input width."""
        missing = [s for s in self.stages if s not in self.maps]
        if missing:
            raise RuntimeError(f'no forward reached the attention of stage(s) {missing}')
        out = []
        for s in self.stages:
            m = self.maps[s]
            stride = max(1, round(input_width / m.weights.shape[-1]))
            out.append(StageAttention(s, m.weights, m.form, stride, m.constant, m.message))
        return out


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor,
                   stages: Optional[Sequence[int]] = None) -> List[StageAttention]:
    """Per stage, the additive attention's token weights for ``images``.

    Args:
        model: a SwiftFormer (bare, in any form: training, eval, deploy) or a
            det/seg model (possibly wrapped) whose ``backbone`` is one.
        images: B x 3 x H x W, already normalised as the backbone expects.
        stages: 0-based stages (default: all).

    Returns:
        One :class:`StageAttention` per stage: ``weights`` (signed,
        B x H_i x W_i), ``magnitude``, ``form``, ``stride``, and for the
        softmax form ``constant=True`` with ``message``.
    """
    backbone = find_swiftformer(model)
    with AttentionRecorder(backbone, stages) as rec:
        backbone(images)
    return rec.results(images.shape[-1])
