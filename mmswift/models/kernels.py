"""The fast forms of the SwiftFormer blocks, behind one switch.

Every block's ``forward()`` is the plain computation, the reference. This
module computes the same maths faster, and is the only place that does:
``SwiftFormer(kernels=...)`` chooses

* ``'plain'``: every block runs its own ``forward()``; nothing here runs.
* ``'auto'`` (default): the forms below where they apply, ``forward()``
  everywhere else.
* ``dict(type='auto', rows_per_block=..., recompute_mlp_min_bytes=...)``:
  ``'auto'`` with the CPU thresholds below set.

The forms (all on the channels_last token matrix ``B*H*W x C``, a view):

* Inference (no autograd needed, any device): the MLPs as blocks of rows
  whose hidden activation stays in cache (GEMM, in-place GELU, GEMM into the
  output with the residual), and the attention's four projections merged
  into two GEMMs once the global query is known.
* Training on CPU: the MLPs as the same blocks of rows through one autograd
  function (:class:`BlockedMlpResidual`) whose backward also runs block by
  block, so that GELU and its derivative work on blocks in cache. It keeps
  the pre-GELU hidden activation for backward, or for large expanding MLPs
  (stage one at detection sizes) only the MLP's input, recomputing each
  block's hidden activation. The maps stay channels_last from the stem to
  the output norms; BatchNorms that compute batch statistics run on them
  with accurately summed statistics (:class:`ChannelsLastBatchNorm`), and
  modules that run as themselves get NCHW memory (:func:`plain_on_nchw`).

Why: at 800x1344 a stage-one MLP expands 67,200 tokens of 48 channels into a
52 MB hidden activation; allocating, writing, GELU as a separate pass and
reading it back cost about 2.5x the two GEMMs, and 1x1 convs on
channels_last maps are slower than the same GEMMs on CPU.

Where a form could change what a caller sees, ``forward()`` runs instead:
training with stochastic depth or dropout, training off the CPU, autocast,
tracing (ONNX), scripting, ``torch.compile``, forward-mode AD and
``torch.func`` transforms, and modules that someone observes: hooks on a
stage, a block or any of its submodules, or global module hooks (FLOP
counters such as mmengine's ``get_model_complexity_info``, feature
extractors), which the fast forms would bypass (:func:`observed`). Double
backward goes through a differentiable recomputation. Every form equals the
plain one up to float rounding; the tests compare them through this switch.
"""
from dataclasses import dataclass, fields
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.autograd.forward_ad as forward_ad
import torch.nn as nn
import torch.nn.functional as F
from torch._C._functorch import peek_interpreter_stack
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ConfigError

KERNEL_TYPES = ('auto', 'plain')


@dataclass(frozen=True)
class KernelConfig:
    """What ``SwiftFormer(kernels=...)`` asks for.

    Args:
        type: ``'auto'`` or ``'plain'``.
        rows_per_block: tokens per block of the blocked MLP on CPU: 2048
            tokens x 192 hidden channels is 1.5 MB, within L2/L3; 1024-4096
            measured within 10 % on stage one/two shapes. Off the CPU one
            block is the whole tensor.
        recompute_mlp_min_bytes: in CPU training, expanding MLPs whose
            hidden activation is at least this large keep only their input
            and recompute the hidden activation in backward; the others keep
            it. Forward + backward of one MLP at 800x1344, 2 AVX-512 cores
            (ms, kept -> recomputed): stage one (52 MB) 80 -> 72, stage two
            (26 MB) 51 -> 58, stage three (13 MB) 44 -> 51.
    """
    type: str = 'auto'
    rows_per_block: int = 2048
    recompute_mlp_min_bytes: int = 32 * 2**20

    @classmethod
    def build(cls, cfg: Union[str, dict, 'KernelConfig']) -> 'KernelConfig':
        if isinstance(cfg, KernelConfig):
            return cfg
        cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
        known = {f.name for f in fields(cls)}
        if cfg.get('type', 'auto') not in KERNEL_TYPES or set(cfg) - known:
            raise ConfigError(
                f'SwiftFormer: kernels={cfg!r}; use one of {KERNEL_TYPES} or a dict with '
                f'type and any of {sorted(known - {"type"})}; fix model.backbone.kernels')
        return cls(**cfg)

    def recompute_mlp(self, tokens: int, cin: int, hidden: int, itemsize: int) -> bool:
        """Whether a CPU training MLP recomputes its hidden activation in
        backward: expanding, and a hidden activation of at least
        ``recompute_mlp_min_bytes``."""
        return hidden > cin and tokens * hidden * itemsize >= self.recompute_mlp_min_bytes

    def describe(self) -> str:
        if self.type == 'plain':
            return "kernels='plain': every block runs its plain forward()"
        return (f"kernels='auto': fast CPU/inference forms where they apply (rows_per_block="
                f"{self.rows_per_block}, recompute_mlp_min_bytes={self.recompute_mlp_min_bytes}); "
                f"kernels='plain' for the reference computation")


def eager_full_precision(x: torch.Tensor) -> bool:
    """No tracing, scripting, ``torch.compile``, autocast, forward-mode AD or
    ``torch.func`` transform: the fast forms would change what those see."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    if forward_ad._current_level >= 0 or peek_interpreter_stack() is not None:
        return False
    return not torch.is_autocast_enabled(x.device.type)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or m._backward_pre_hooks)


def observed(module: nn.Module) -> bool:
    """Whether hooks watch ``module`` or any submodule run, or global module
    hooks are registered: then the plain ``forward()`` runs, so that every
    hook sees the call it expects. About 10 us per block."""
    if _has_any_global_hook():
        return True
    return any(_has_hooks(m) for m in module.modules())


def _has_any_global_hook() -> bool:
    import torch.nn.modules.module as module_mod
    has_any = getattr(module_mod, '_has_any_global_hook', None)
    if has_any is not None:
        return bool(has_any())
    return any(getattr(module_mod, name, None) for name in (
        '_global_forward_hooks', '_global_forward_pre_hooks', '_global_backward_hooks',
        '_global_backward_pre_hooks'))


def needs_autograd(x: torch.Tensor, module: nn.Module) -> bool:
    """Whether autograd must see this block: grad mode and anything that
    requires grad, the input or any parameter (a layer scale alone too)."""
    return torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in module.parameters()))


def token_rows(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``x`` in channels_last and its ``B*H*W x C`` token matrix (a view)."""
    x = x.contiguous(memory_format=torch.channels_last)
    return x, x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def recomputed_grads(fn, inputs: Sequence[torch.Tensor], wanted: Sequence[bool],
                     dy: torch.Tensor) -> List[Optional[torch.Tensor]]:
    """The backward of a custom autograd function under ``create_graph``
    (double backward, gradient penalties): the gradients of ``fn(*inputs)``
    for the ``wanted`` inputs (None for the others) by differentiating a
    recomputation with autograd, so that they have a graph of their own."""
    grads: List[Optional[torch.Tensor]] = [None] * len(inputs)
    index = [i for i, w in enumerate(wanted) if w]
    if index:
        with torch.enable_grad():
            found = torch.autograd.grad(fn(*inputs), [inputs[i] for i in index], dy,
                                        create_graph=True, allow_unused=True)
        for i, g in zip(index, found):
            grads[i] = g
    return grads


def batch_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``. A BatchNorm that computes batch statistics of a
    channels_last map on the CPU takes :class:`ChannelsLastBatchNorm`:
    PyTorch's own channels_last kernel sums the statistics naively (6e-6 of
    the output against 2e-7 on NCHW, worse for large means; compounded over
    the depth, 2.5e-4 at the backbone's output), and copying to NCHW and
    back costs more than the BatchNorm itself. Other batch-statistics
    BatchNorms get NCHW memory."""
    if not isinstance(norm, _BatchNorm) or not (norm.training or norm.running_var is None) \
            or x.is_contiguous():
        return norm(x)
    if type(norm) is nn.BatchNorm2d and norm.affine and x.device.type == 'cpu' \
            and x.is_contiguous(memory_format=torch.channels_last) \
            and x.numel() > x.shape[1]:  # one value per channel: norm() raises
        return channels_last_batch_norm(norm, x)
    return norm(x.contiguous())


def plain_on_nchw(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; in training on NCHW memory, so that its BatchNorms sum
    their batch statistics accurately (see :func:`batch_norm`)."""
    return module(x.contiguous() if module.training else x)


def channels_last_batch_norm(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """What ``norm(x)`` computes and updates (batch statistics, running
    statistics, ``num_batches_tracked``), for a channels_last ``x``."""
    momentum = 0.0 if norm.momentum is None else norm.momentum
    update = norm.training and norm.track_running_stats
    if update and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    y, mean, var = ChannelsLastBatchNorm.apply(x, norm.weight, norm.bias, norm.eps)
    if update and norm.running_mean is not None:
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            norm.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            norm.running_var.mul_(1 - momentum).add_(var * (n / (n - 1)), alpha=momentum)
    return y


class ChannelsLastBatchNorm(torch.autograd.Function):
    """Training BatchNorm of a channels_last map with accurate statistics:
    the mean (corrected by a second pass) and the variance cascaded over the
    ``B*H*W x C`` token rows, as PyTorch sums on NCHW memory (its
    channels_last kernel sums them naively); the normalisation and the
    backward by PyTorch's channels_last kernels given those statistics.
    Returns the output and the batch mean and (biased) variance."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, rows = token_rows(x)
        n = rows.shape[0]
        mean = rows.sum(0).div_(n)
        dev = rows - mean
        # correct the mean by the rounding its sum left (a constant channel
        # then gets exactly its value, and normalises to its bias, not to
        # the rounding times 1/sqrt(eps)); the variance from the deviations
        mean.add_(dev.sum(0).div_(n))
        var = dev.square_().sum(0).div_(n)
        y = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)
        ctx.save_for_backward(x, weight, bias, mean, (var + eps).rsqrt())
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy: torch.Tensor, _mean: torch.Tensor, _var: torch.Tensor):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        wanted = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: differentiate a recomputation
            def train_bn(x, weight, bias):
                return F.batch_norm(x.contiguous(), None, None, weight, bias, True, 0.0, ctx.eps)
            return (*recomputed_grads(train_bn, (x, weight, bias), wanted, dy), None)
        dy = dy.contiguous(memory_format=torch.channels_last)
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            dy, x, weight, None, None, mean, invstd, True, ctx.eps, list(wanted))
        return (dx if wanted[0] else None, dw if wanted[1] else None,
                db if wanted[2] else None, None)


def _gamma(layer_scale: nn.Module) -> Optional[torch.Tensor]:
    """A layer scale's factors, or None once folded away (deploy form)."""
    return getattr(layer_scale, 'gamma', None)


class BlockKernels:
    """Runs a backbone's stages in the form ``cfg`` asks for."""

    def __init__(self, cfg: KernelConfig) -> None:
        self.cfg = cfg

    @property
    def plain(self) -> bool:
        return self.cfg.type == 'plain'

    def prepare(self, x: torch.Tensor, training: bool) -> torch.Tensor:
        """The fast forms work on channels_last maps, at inference anywhere
        and in training on the CPU: convert once, before the stem."""
        if self.plain or not eager_full_precision(x) or (training and x.device.type != 'cpu'):
            return x
        return x.contiguous(memory_format=torch.channels_last)

    def layers(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The stem (conv-norm-ReLU steps), a downsampling (conv, norm) or an
        output norm. In training on a channels_last map its BatchNorms go
        through :func:`batch_norm`; observed, it runs as itself on NCHW."""
        from .backbones.swiftformer import Downsample
        if self.plain or not module.training or x.is_contiguous() \
                or isinstance(module, nn.Identity):
            return module(x)
        if observed(module) or not isinstance(module, (nn.Sequential, Downsample, _BatchNorm)):
            return plain_on_nchw(module, x)
        if isinstance(module, Downsample):
            return batch_norm(module.norm, module.proj(x))
        for m in (module if isinstance(module, nn.Sequential) else (module,)):
            x = batch_norm(m, x) if isinstance(m, _BatchNorm) else m(x)
        return x

    def stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.plain or _has_hooks(stage) or _has_hooks(stage.blocks):
            return plain_on_nchw(stage, x)
        x = self.layers(stage.downsample, x)
        for block in stage.blocks:
            x = self.block(block, x)
        return x

    def block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        from .backbones.swiftformer import ConvEncoder, SwiftFormerBlock
        if not eager_full_precision(x) or observed(block):
            return plain_on_nchw(block, x)
        grad = needs_autograd(x, block)
        if grad and x.device.type != 'cpu':
            return block(x)
        if isinstance(block, ConvEncoder) and (
                not block.training or isinstance(block.drop_path, nn.Identity)):
            return self._conv_encoder(block, x, grad)
        if isinstance(block, SwiftFormerBlock) and (not block.training or (
                isinstance(block.drop_path, nn.Identity) and block.linear.drop.p == 0)):
            x = self._conv_encoder(block.local_representation, x, grad)
            if block.training:
                x = x + block.layer_scale_1(block.attn(x))
            else:
                x = attention_residual(block.attn, x, _gamma(block.layer_scale_1), inplace=not grad)
            return self._mlp_residual(batch_norm(block.linear.norm1, x), block.linear.fc1,
                                      block.linear.fc2, x, _gamma(block.layer_scale_2), grad)
        return plain_on_nchw(block, x)  # stochastic depth or dropout in training

    def _conv_encoder(self, block: nn.Module, x: torch.Tensor, grad: bool) -> torch.Tensor:
        y = batch_norm(block.norm, block.dwconv(x))
        return self._mlp_residual(y, block.pwconv1, block.pwconv2, x, _gamma(block.layer_scale),
                                  grad)

    def _mlp_residual(self, x: torch.Tensor, fc1: nn.Conv2d, fc2: nn.Conv2d,
                      residual: torch.Tensor, scale: Optional[torch.Tensor],
                      grad: bool) -> torch.Tensor:
        """``residual + scale * fc2(gelu(fc1(x)))`` for 1x1 convs with biases,
        channels_last out."""
        hidden, cin = fc1.weight.shape[:2]
        cout = fc2.weight.shape[0]
        w1, w2 = fc1.weight.view(hidden, cin), fc2.weight.view(cout, hidden)
        b, _, h, w = x.shape
        x, rows = token_rows(x)
        residual, res_rows = token_rows(residual)
        if not grad:  # inference: blocked, in place
            w2t, b2 = w2.t(), fc2.bias
            if scale is not None:
                w2t, b2 = w2t * scale.reshape(1, -1), b2 * scale.reshape(-1)
            out = torch.empty_like(residual)
            step = self.cfg.rows_per_block if x.device.type == 'cpu' else rows.shape[0]
            blocked_mlp_forward(rows, res_rows, w1.t(), fc1.bias, w2t, b2,
                                out.permute(0, 2, 3, 1).view(-1, cout), step)
            return out
        gamma = scale.reshape(-1) if scale is not None else x.new_ones(cout)
        recompute = self.cfg.recompute_mlp(rows.shape[0], cin, hidden, x.element_size())
        out = BlockedMlpResidual.apply(rows, res_rows, w1, fc1.bias, w2, fc2.bias, gamma,
                                       self.cfg.rows_per_block, recompute)
        return out.view(b, h, w, cout).permute(0, 3, 1, 2)


def _mlp_rows(x, w1, b1, w2, b2, gamma):
    return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2) * gamma


class BlockedMlpResidual(torch.autograd.Function):
    """``res + (gelu(x W1^T + b1) W2^T + b2) * gamma`` on token rows, forward
    and backward block by block. Backward reads the pre-GELU hidden
    activation kept by forward, or with ``recompute`` recomputes it block by
    block from the input. Under ``create_graph`` (double backward, gradient
    penalties) the backward is a differentiable recomputation instead."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, res: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                w2: torch.Tensor, b2: torch.Tensor, gamma: torch.Tensor,
                rows_per_block: int, recompute: bool) -> torch.Tensor:
        out = torch.empty_like(res)
        hidden = None if recompute else x.new_empty(x.shape[0], w1.shape[0])
        blocked_mlp_forward(x, res, w1.t(), b1, (w2 * gamma[:, None]).t(), b2 * gamma, out,
                            rows_per_block, hidden)
        ctx.save_for_backward(x, w1, b1, w2, b2, gamma, hidden)
        ctx.rows_per_block = rows_per_block
        return out

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x, w1, b1, w2, b2, gamma, hidden = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiate a recomputation
            # the inputs but res, whose gradient is dy itself
            wanted = [w for i, w in enumerate(ctx.needs_input_grad[:7]) if i != 1]
            grads = recomputed_grads(_mlp_rows, (x, w1, b1, w2, b2, gamma), wanted, dy)
            return grads[0], dy, *grads[1:], None, None
        dy = dy.contiguous()
        w2s, w1t = w2 * gamma[:, None], w1.t()
        dx = torch.empty_like(x)
        dw1, db1 = torch.zeros_like(w1), torch.zeros_like(b1)
        dw2s = torch.zeros_like(w2)  # dy^T gelu(h), the grad of w2 * gamma
        step = min(ctx.rows_per_block, x.shape[0])
        buffers = [x.new_empty(step, w1.shape[0]) for _ in range(3)]
        for i in range(0, x.shape[0], step):
            rows = slice(i, i + step)
            xb, dyb = x[rows], dy[rows]
            h, g, dh = (b[:xb.shape[0]] for b in buffers)
            if hidden is None:
                torch.addmm(b1, xb, w1t, out=h)
            else:
                h = hidden[rows]
            torch.ops.aten.gelu.out(h, out=g)
            dw2s.addmm_(dyb.t(), g)
            torch.mm(dyb, w2s, out=dh)
            torch.ops.aten.gelu_backward.grad_input(dh, h, grad_input=dh)
            db1.add_(dh.sum(0))
            dw1.addmm_(dh.t(), xb)
            torch.mm(dh, w1, out=dx[rows])
        dy_sum = dy.sum(0)
        dgamma = (w2 * dw2s).sum(1) + b2 * dy_sum
        return dx, dy, dw1, db1, dw2s * gamma[:, None], dy_sum * gamma, dgamma, None, None


def blocked_mlp_forward(rows: torch.Tensor, res_rows: torch.Tensor, w1t: torch.Tensor,
                        b1: torch.Tensor, w2t: torch.Tensor, b2: torch.Tensor,
                        out_rows: torch.Tensor, step: int,
                        hidden: Optional[torch.Tensor] = None) -> None:
    """``out_rows = res_rows + gelu(rows w1t + b1) w2t + b2``, ``step`` rows
    at a time; the pre-GELU activation written to ``hidden`` if given."""
    for i in range(0, rows.shape[0], step):
        if hidden is None:  # inference, or recomputed in backward: GELU in place
            h = torch.addmm(b1, rows[i:i + step], w1t)
            torch.ops.aten.gelu_(h)
        else:  # the pre-GELU activation kept for backward
            h = F.gelu(torch.addmm(b1, rows[i:i + step], w1t, out=hidden[i:i + step]))
        torch.addmm(res_rows[i:i + step], h, w2t, out=out_rows[i:i + step]).add_(b2)


def merged_attention_weights(attn: nn.Module, gamma: Optional[torch.Tensor]) -> dict:
    """``final(proj(G * k) + b_p + q) = k diag(G) (W_f W_p)^T + q W_f^T +
    (W_f b_p + b_f)``: one GEMM over ``[q | k]`` once ``G`` is known; the
    block's layer scale ``gamma`` folds into ``final``."""
    w_f, b_f = attn.final.weight, attn.final.bias
    if gamma is not None:
        w_f, b_f = w_f * gamma.reshape(-1, 1), b_f * gamma.reshape(-1)
    return dict(qk_weight=torch.cat([attn.to_query.weight, attn.to_key.weight]).t(),
                qk_bias=torch.cat([attn.to_query.bias, attn.to_key.bias]),
                out_q=w_f.t(), out_k=(w_f @ attn.proj.weight).t(),
                out_bias=w_f @ attn.proj.bias + b_f)


def attention_residual(attn: nn.Module, x: torch.Tensor, gamma: Optional[torch.Tensor],
                       inplace: bool) -> torch.Tensor:
    """``x + gamma * attn(x)``, token-major on the channels_last map: query
    and key from one GEMM, the output from one batched GEMM over ``[q | k]``
    that also adds the residual; a channels_last NCHW result."""
    w = merged_attention_weights(attn, gamma)
    b, c, h, wd = x.shape
    x, rows = token_rows(x)
    qk = torch.addmm(w['qk_bias'], rows, w['qk_weight'])  # BN x 2C: [q | k]
    pairs = qk.view(b, h * wd, 2, c)
    norm = torch.linalg.vector_norm(pairs, dim=-1, keepdim=True).clamp_min(1e-12)
    pairs = pairs.div_(norm) if inplace else pairs / norm
    qk = pairs.view(b, h * wd, 2 * c)
    if attn.attn_norm == 'l2':
        # the scores from the query half of the contiguous [q | k] rows
        w_g = torch.cat([attn.w_g, torch.zeros_like(attn.w_g)]) * attn.scale_factor
        scores = qk @ w_g  # B x N x 1
        scores = scores / torch.linalg.vector_norm(scores, dim=1, keepdim=True).clamp_min(1e-12)
        g = (scores.transpose(1, 2) @ qk)[:, :, :c]  # B x 1 x C
    else:  # softmax over one column: every score is one
        g = pairs[:, :, 0].sum(dim=1, keepdim=True)
    m = torch.cat([w['out_q'].expand(b, c, c), g.transpose(1, 2) * w['out_k']], dim=1)
    out = torch.baddbmm(rows.view(b, h * wd, c), qk, m)
    out = out.add_(w['out_bias']) if inplace else out + w['out_bias']
    return out.view(b, h, wd, c).permute(0, 3, 1, 2)


def check_feature_consumers(model: nn.Module) -> None:
    """Refuse a model in which a SwiftFormer emits channels_last features
    (``out_channels_last=True``) and an mmcv op reads them: mmcv's CPU
    kernels (RoIAlign in mmdet's RoI extractors) index NCHW memory whatever
    the strides say, and would silently read the wrong pixels. mmswift's
    RoIAlign respects strides."""
    from .backbones.swiftformer import SwiftFormer
    emitting = [name for name, m in model.named_modules()
                if isinstance(m, SwiftFormer) and m.out_channels_last]
    if not emitting:
        return
    readers = [f'{name} ({type(m).__module__}.{type(m).__name__})'
               for name, m in model.named_modules() if type(m).__module__.startswith('mmcv.ops')]
    if readers:
        raise ConfigError(
            f'{emitting[0] or "the backbone"} has out_channels_last=True but {readers[0]} reads '
            f'NCHW memory only; set model.backbone.out_channels_last=False, or use '
            f"roi_extractor type='mmswift.SingleRoIExtractor'")
