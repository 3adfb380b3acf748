"""Efficient additive attention (SwiftFormer, ICCV 2023)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import CheckpointError

ATTN_NORMS = ('l2', 'softmax')


def _pointwise(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Apply a token-wise ``nn.Linear`` to an NCHW map, as the reference
    does on B x N x C tokens (the module is called, so that hooks and FLOP
    counters see it); the result is an NCHW view of channels_last memory."""
    return linear(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EfficientAdditiveAttention(nn.Module):
    """Additive attention over all H*W tokens in linear time.

    Query and key are projected and L2-normalised per token; a learned
    vector ``w_g`` scores every query token, the scores are normalised over
    the tokens, and the scored queries are pooled into one global query
    ``G``. ``G * key`` then goes through a linear layer, the query is added
    back and a final linear layer projects the result.

    Args:
        dim: channels in and out.
        attn_norm: how the token scores are normalised. ``'l2'`` is the
            official definition since July 2023 (``F.normalize(dim=1)``
            over tokens). ``'softmax'`` is the earlier release, which took
            a softmax over the size-1 last axis, so every score is exactly 1
            and ``G`` is the plain sum of the queries; checkpoints trained
            with that code (and the HuggingFace port) need it.

    The form is part of the weights' identity: the buffer ``attn_norm_code``
    (0: l2, 1: softmax) goes into every state dict, and loading one of the
    other form raises instead of computing a different function.
    """

    def __init__(self, dim: int, attn_norm: str = 'l2') -> None:
        super().__init__()
        if attn_norm not in ATTN_NORMS:
            raise ValueError(f'attn_norm={attn_norm!r}; expected one of '
                             f'{ATTN_NORMS}')
        self.attn_norm = attn_norm
        self.scale_factor = dim**-0.5
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.w_g = nn.Parameter(torch.randn(dim, 1))
        self.proj = nn.Linear(dim, dim)
        self.final = nn.Linear(dim, dim)
        self.register_buffer('attn_norm_code', torch.tensor(ATTN_NORMS.index(attn_norm)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = F.normalize(_pointwise(x, self.to_query), dim=1)
        key = F.normalize(_pointwise(x, self.to_key), dim=1)
        # one score per token: B x 1 x H x W
        scores = F.conv2d(query, self.w_g.t()[:, :, None, None]) * self.scale_factor
        if self.attn_norm == 'l2':
            scores = scores / scores.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
        else:
            scores = scores.softmax(dim=1)  # over a size-1 axis: all ones
        global_query = (scores * query).sum(dim=(2, 3), keepdim=True)
        out = _pointwise(global_query * key, self.proj) + query
        return _pointwise(out, self.final)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        key = prefix + 'attn_norm_code'
        if key in state_dict:
            theirs = ATTN_NORMS[int(state_dict[key])]
            if theirs != self.attn_norm:
                raise CheckpointError(
                    f"{key}: these weights were trained with attn_norm='{theirs}' but the "
                    f"backbone is built with attn_norm='{self.attn_norm}'; set "
                    f"model.backbone.attn_norm='{theirs}'")
        else:  # checkpoints of other codebases, and mmswift's before it recorded the form
            state_dict[key] = self.attn_norm_code
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
