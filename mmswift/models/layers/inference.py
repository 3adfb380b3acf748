"""When the blocks may use their fast kernels, and the token matrix they use."""
from typing import Tuple

import torch


def eager_full_precision(x: torch.Tensor) -> bool:
    """No tracing (ONNX export), scripting, ``torch.compile`` or autocast:
    the kernels would change what those see or compute."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    return not torch.is_autocast_enabled(x.device.type)


def use_inference_kernels(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """Whether the in-place, out= kernels may run on ``x``: eager, full
    precision and nothing that autograd would need."""
    if not eager_full_precision(x):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)))


def token_rows(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``x`` in channels_last and its ``B*H*W x C`` token matrix (a view)."""
    x = x.contiguous(memory_format=torch.channels_last)
    return x, x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
