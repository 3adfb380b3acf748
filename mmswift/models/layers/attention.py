"""Efficient additive attention (SwiftFormer, ICCV 2023)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .inference import token_rows, use_inference_kernels

ATTN_NORMS = ('l2', 'softmax')


def _pointwise(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """Apply a token-wise ``nn.Linear`` to an NCHW map as a 1x1 conv.

    Same parameters (and state-dict keys) as the reference's Linear on
    B x N x C tokens, but no permute/reshape round trip, and it keeps
    whatever memory format (NCHW or channels_last) the input has.
    """
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


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
        self.deploy = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query = F.normalize(_pointwise(x, self.to_query), dim=1)
        key = F.normalize(_pointwise(x, self.to_key), dim=1)
        # one score per token: B x 1 x H x W
        scores = F.conv2d(query, self.w_g.t()[:, :, None, None]) * self.scale_factor
        if self.attn_norm == 'l2':
            norm = scores.flatten(1).norm(dim=1).clamp_min(1e-12)
            scores = scores / norm[:, None, None, None]
        else:
            scores = scores.softmax(dim=1)  # over a size-1 axis: all ones
        global_query = (scores * query).sum(dim=(2, 3), keepdim=True)
        out = _pointwise(global_query * key, self.proj) + query
        return _pointwise(out, self.final)

    # ------------------------------------------------------------ inference
    def _merged(self, gamma: Optional[torch.Tensor]):
        """The weights of the token-major form (see :meth:`forward_residual`).

        ``final(proj(G * k) + b_p + q) = k diag(G) (W_f W_p)^T + q W_f^T +
        (W_f b_p + b_f)``: one GEMM over ``[q | k]`` once ``G`` is known.
        """
        w_f, b_f = self.final.weight, self.final.bias
        if gamma is not None:  # the block's layer scale, folded into final
            w_f, b_f = w_f * gamma.reshape(-1, 1), b_f * gamma.reshape(-1)
        qk_weight = torch.cat([self.to_query.weight, self.to_key.weight]).t()
        qk_bias = torch.cat([self.to_query.bias, self.to_key.bias])
        return dict(qk_weight=qk_weight, qk_bias=qk_bias, out_q=w_f.t(),
                    out_k=(w_f @ self.proj.weight).t(), out_bias=w_f @ self.proj.bias + b_f)

    @torch.no_grad()
    def switch_to_deploy(self, gamma: Optional[torch.Tensor] = None) -> None:
        """Merge the four projections (and the block's layer scale)."""
        if self.deploy:
            return
        for name, value in self._merged(gamma).items():
            self.register_parameter(name, nn.Parameter(value.contiguous(), requires_grad=False))
        del self.to_query, self.to_key, self.proj, self.final
        self.deploy = True

    def forward_residual(self, x: torch.Tensor,
                         gamma: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x + gamma * attn(x)``, token-major on the channels_last map.

        Query and key come from one GEMM, the output from one batched GEMM
        over ``[q | k]`` that also adds the residual; the result is a
        channels_last NCHW map.
        """
        w = (dict(qk_weight=self.qk_weight, qk_bias=self.qk_bias, out_q=self.out_q,
                  out_k=self.out_k, out_bias=self.out_bias) if self.deploy else self._merged(gamma))
        b, c, h, wd = x.shape
        inplace = use_inference_kernels(x, w['qk_weight'])
        x, rows = token_rows(x)
        qk = torch.addmm(w['qk_bias'], rows, w['qk_weight'])  # BN x 2C: [q | k]
        pairs = qk.view(b, h * wd, 2, c)
        norm = torch.linalg.vector_norm(pairs, dim=-1, keepdim=True).clamp_min(1e-12)
        pairs = pairs.div_(norm) if inplace else pairs / norm
        qk = pairs.view(b, h * wd, 2 * c)
        if self.attn_norm == 'l2':
            w_g = torch.cat([self.w_g, torch.zeros_like(self.w_g)]) * self.scale_factor
            scores = qk @ w_g  # B x N x 1, from the query half
            scores = scores / torch.linalg.vector_norm(scores, dim=1, keepdim=True).clamp_min(1e-12)
            g = (scores.transpose(1, 2) @ qk)[:, :, :c]  # B x 1 x C
        else:  # all scores are one
            g = pairs[:, :, 0].sum(dim=1, keepdim=True)
        m = torch.cat([w['out_q'].expand(b, c, c), g.transpose(1, 2) * w['out_k']], dim=1)
        out = torch.baddbmm(rows.view(b, h * wd, c), qk, m)
        out = out.add_(w['out_bias']) if inplace else out + w['out_bias']
        return out.view(b, h, wd, c).permute(0, 3, 1, 2)
