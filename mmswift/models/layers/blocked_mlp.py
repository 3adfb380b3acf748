"""The SwiftFormer MLP residual on channels_last token rows.

At detection sizes the early stages are bound by memory traffic, not by
arithmetic. At 800x1344 a stage-one MLP expands 67,200 tokens of 48 channels
to a 52 MB hidden activation; allocating it (fresh pages), writing it, running
GELU as a separate pass and reading it back costs about 2.5x what the two
GEMMs cost. The forms below work on the channels_last token matrix
(``B*H*W x C``, a view, no copy):

* Inference (no autograd): blocks of rows whose hidden activation stays in
  cache: GEMM, in-place GELU, GEMM into the output with the residual.
* Training on CPU, large expanding MLPs (stage one at detection sizes): an
  autograd function that stores only the MLP's input and recomputes each
  block's hidden activation in backward, one extra GEMM instead of two 52 MB
  tensors written and read back (and kept in memory).
* Training on CPU otherwise: the same ops as the plain form, as GEMMs on the
  token rows with the residual added by the second GEMM; the 1x1 convs on
  channels_last maps are slower.
* CUDA, autocast, tracing (ONNX export) and ``torch.compile``: plain 1x1
  convs, GELU and the residual, as the reference computes them.

Every form computes what the plain ops compute, up to float rounding.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .inference import eager_full_precision, token_rows, use_inference_kernels

# Rows per block on CPU: 2048 tokens x 192 hidden channels is 1.5 MB, within
# L2/L3. Measured on stage one/two shapes: 1024-4096 are within 10 %; on GPUs
# one block (the whole tensor) is best.
CPU_ROWS_PER_BLOCK = 2048
# Training takes the blocked form from this hidden-activation size up.
# Forward + backward, channels_last in, 2 AVX2 cores (CPU ms, token-row GEMMs
# -> blocked): stage one at 800x1344 (52 MB) 335 -> 211, stage two (26 MB)
# 197 -> 209, stage three (13 MB) 134 -> 162, stage one at 512x512 (13 MB)
# 64 -> 66.
TRAINING_MIN_HIDDEN_BYTES = 32 * 2**20


def use_blocked_training(x: torch.Tensor, hidden: int) -> bool:
    """Whether the MLP on ``x`` (N x C x H x W) with ``hidden`` channels
    trains faster blocked, with recomputation (see the module docstring)."""
    cin = x.shape[1]
    hidden_bytes = x.numel() // cin * hidden * x.element_size()
    return hidden > cin and hidden_bytes >= TRAINING_MIN_HIDDEN_BYTES


class BlockedMlpResidual(torch.autograd.Function):
    """``res + (gelu(x W1^T + b1) W2^T + b2) * gamma`` on token rows, with
    the hidden activation recomputed block by block in backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, res: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                w2: torch.Tensor, b2: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(res)
        _blocked_forward(x, res, w1.t(), b1, (w2 * gamma[:, None]).t(), b2 * gamma, out,
                         CPU_ROWS_PER_BLOCK)
        ctx.save_for_backward(x, w1, b1, w2, b2, gamma)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        x, w1, b1, w2, b2, gamma = ctx.saved_tensors
        dy = dy.contiguous()
        w2s, w1t = w2 * gamma[:, None], w1.t()
        dx = torch.empty_like(x)
        dw1, db1 = torch.zeros_like(w1), torch.zeros_like(b1)
        dw2s = torch.zeros_like(w2)  # dy^T gelu(h), the grad of w2 * gamma
        step = min(CPU_ROWS_PER_BLOCK, x.shape[0])
        buffers = [x.new_empty(step, w1.shape[0]) for _ in range(3)]
        for i in range(0, x.shape[0], step):
            rows = slice(i, i + step)
            xb, dyb = x[rows], dy[rows]
            h, g, dh = (b[:xb.shape[0]] for b in buffers)
            torch.addmm(b1, xb, w1t, out=h)
            torch.ops.aten.gelu.out(h, out=g)
            dw2s.addmm_(dyb.t(), g)
            torch.mm(dyb, w2s, out=dh)
            torch.ops.aten.gelu_backward.grad_input(dh, h, grad_input=dh)
            db1.add_(dh.sum(0))
            dw1.addmm_(dh.t(), xb)
            torch.mm(dh, w1, out=dx[rows])
        dy_sum = dy.sum(0)
        dgamma = (w2 * dw2s).sum(1) + b2 * dy_sum
        return dx, dy, dw1, db1, dw2s * gamma[:, None], dy_sum * gamma, dgamma


def mlp_residual(x: torch.Tensor, fc1: nn.Conv2d, fc2: nn.Conv2d, residual: torch.Tensor,
                 scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``residual + scale * fc2(gelu(fc1(x)))`` for 1x1 convs with biases.

    Blocked (channels_last result) at inference and, where it pays, in
    training on CPU; plain differentiable ops otherwise.
    """
    hidden, cin = fc1.weight.shape[:2]
    cout = fc2.weight.shape[0]
    if use_inference_kernels(x, fc1.weight, fc2.weight):
        return _inference(x, fc1, fc2, residual, scale)
    if x.device.type != 'cpu' or not eager_full_precision(x):
        y = fc2(F.gelu(fc1(x)))
        return residual + (y if scale is None else y * scale)
    # training on CPU: token-major, channels_last out
    gamma = scale.reshape(-1) if scale is not None else x.new_ones(cout)
    b, _, h, w = x.shape
    _, rows = token_rows(x)
    _, res_rows = token_rows(residual)
    w1, w2 = fc1.weight.view(hidden, cin), fc2.weight.view(cout, hidden)
    if use_blocked_training(x, hidden):
        out = BlockedMlpResidual.apply(rows, res_rows, w1, fc1.bias, w2, fc2.bias, gamma)
    else:
        out = torch.addmm(res_rows, F.gelu(F.linear(rows, w1, fc1.bias)), (w2 * gamma[:, None]).t())
        out = out + fc2.bias * gamma
    return out.view(b, h, w, cout).permute(0, 3, 1, 2)


def _inference(x: torch.Tensor, fc1: nn.Conv2d, fc2: nn.Conv2d, residual: torch.Tensor,
               scale: Optional[torch.Tensor]) -> torch.Tensor:
    hidden, cin = fc1.weight.shape[:2]
    cout = fc2.weight.shape[0]
    w2, b2 = fc2.weight.view(cout, hidden).t(), fc2.bias
    if scale is not None:
        w2, b2 = w2 * scale.reshape(1, -1), b2 * scale.reshape(-1)
    x, rows = token_rows(x)
    residual, res_rows = token_rows(residual)
    out = torch.empty_like(residual)
    step = CPU_ROWS_PER_BLOCK if x.device.type == 'cpu' else rows.shape[0]
    _blocked_forward(rows, res_rows, fc1.weight.view(hidden, cin).t(), fc1.bias, w2, b2,
                     out.permute(0, 2, 3, 1).view(-1, cout), step)
    return out


def _blocked_forward(rows: torch.Tensor, res_rows: torch.Tensor, w1t: torch.Tensor,
                     b1: torch.Tensor, w2t: torch.Tensor, b2: torch.Tensor,
                     out_rows: torch.Tensor, step: int) -> None:
    """``out_rows = res_rows + gelu(rows w1t + b1) w2t + b2``, ``step`` rows at a time."""
    for i in range(0, rows.shape[0], step):
        h = torch.addmm(b1, rows[i:i + step], w1t)
        torch.ops.aten.gelu_(h)
        torch.addmm(res_rows[i:i + step], h, w2t, out=out_rows[i:i + step]).add_(b2)
