"""Mutation check: do the tests notice deliberate bugs in the maths?

Why: the fast forms (kernels.py), the deploy fold (fold.py and the blocks'
``switch_to_deploy()``), the checkpoint conversion (pretrained.py) and the
CPU RoIAlign (roi_extractor.py) each re-derive something that has a plain
reference, and a slip in any of them is silent: the network still runs and
still looks plausible. A test suite that passes says little unless it fails
when such a slip is made. This script makes the slips on purpose, one at a
time, and checks that the quick tier fails on each.

How: for every mutant below (a file, an exact snippet that must occur there
exactly once, its replacement), the repository's files (tracked and untracked,
not ignored; never .venv) are copied to a temporary folder, the snippet is
replaced, and ``pytest -q -x -m "not slow" -p no:randomly`` runs the chosen
test files with that copy first on ``sys.path``; a guard plugin checks inside
that pytest process that ``mmswift`` really is imported from the copy (the
venv's editable install points at the working tree). The unmutated copy runs
first, in full: a test that already fails there would "kill" every mutant, so
such tests are named and deselected for the mutants (and a copy pytest cannot
collect stops the check).

A mutant is KILLED when pytest reports failing tests (exit status 1),
SURVIVED when every test passes, ERROR on exit statuses 2-5 (collection or
usage errors, interrupted runs), on a timeout, or when the import guard
trips. A mutant marked ``equivalent`` cannot change any output (the reason
is given); it is expected to survive and does not fail the check. Every
other survivor is a hole in the tests.

Run (from the repository root)::

    .venv/bin/python tools/mutation_check.py            # every mutant, 10-30 min
    .venv/bin/python tools/mutation_check.py --list     # the mutants (snippets checked)
    .venv/bin/python tools/mutation_check.py -k roi -k fold   # names containing either
    .venv/bin/python tools/mutation_check.py --all      # the whole quick tier per mutant
    .venv/bin/python tools/mutation_check.py --tests tests/test_roi_align.py -k roi

Exit status: 0 when every mutant that can change outputs is killed, 1 when
one survived or errored, 2 when a snippet is missing or ambiguous (the list
no longer matches the code: update it) or pytest cannot run the unmutated copy.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable

DEFAULT_TESTS = ('tests/test_kernels.py', 'tests/test_fidelity.py', 'tests/test_pretrained.py',
                 'tests/test_roi_align.py', 'tests/test_backbone.py',
                 'tests/test_checkpoint_doors.py', 'tests/test_deploy_hook.py')
# the test files most likely to kill a mutant of a source file run first, so
# that -x stops early
FIRST_TESTS = {
    'mmswift/models/kernels.py': ('tests/test_kernels.py', 'tests/test_fidelity.py'),
    'mmswift/models/layers/attention.py': ('tests/test_fidelity.py', 'tests/test_kernels.py'),
    'mmswift/models/layers/fold.py': ('tests/test_kernels.py', 'tests/test_fidelity.py'),
    'mmswift/models/backbones/swiftformer.py': ('tests/test_kernels.py',
                                                'tests/test_fidelity.py'),
    'mmswift/models/pretrained.py': ('tests/test_pretrained.py',),
    'mmswift/models/roi_extractor.py': ('tests/test_roi_align.py',),
}
PYTEST_ARGS = ('-q', '-m', 'not slow', '-p', 'no:randomly', '-p', 'no:cacheprovider', '-rfE')
GUARD_PLUGIN = '_mutation_check_guard'
GUARD_SOURCE = '''"""Written by tools/mutation_check.py: stop unless mmswift is this copy's."""
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    import mmswift
    where = os.path.abspath(mmswift.__file__)
    if not where.startswith(HERE + os.sep):
        pytest.exit(f'mutation_check guard: mmswift imported from {where}, not from {HERE}',
                    returncode=3)
'''


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str  # repository-relative
    find: str  # must occur exactly once in the file
    replace: str
    what: str
    equivalent: str = ''  # why it cannot change any output; empty: it must be killed


M = Mutant
KERNELS = 'mmswift/models/kernels.py'
ATTENTION = 'mmswift/models/layers/attention.py'
FOLD = 'mmswift/models/layers/fold.py'
BACKBONE = 'mmswift/models/backbones/swiftformer.py'
PRETRAINED = 'mmswift/models/pretrained.py'
ROI = 'mmswift/models/roi_extractor.py'

MUTANTS = (
    # ---------------------------------------------- the attention, plain and merged
    M('merged_attn_l1_norm', KERNELS,
      'scores / torch.linalg.vector_norm(scores, dim=1, keepdim=True)',
      'scores / torch.linalg.vector_norm(scores, ord=1, dim=1, keepdim=True)',
      'merged (eval/deploy) attention: token scores L1- instead of L2-normalised'),
    M('merged_attn_scale_dropped', KERNELS,
      'torch.cat([attn.w_g, torch.zeros_like(attn.w_g)]) * attn.scale_factor',
      'torch.cat([attn.w_g, torch.zeros_like(attn.w_g)])',
      'merged attention: the dim**-0.5 scale factor dropped',
      equivalent='the scores are L2-normalised over the tokens right after, which cancels '
                 'any positive factor (the softmax form does not use them); it differs only '
                 'where that norm is under the 1e-12 clamp, i.e. w_g of order 1e-12'),
    M('merged_attn_qk_norm_skipped_inplace', KERNELS,
      'pairs = pairs.div_(norm) if inplace else pairs / norm',
      'pairs = pairs if inplace else pairs / norm',
      'merged attention: query/key L2 normalisation skipped on the in-place (no-grad) path'),
    M('merged_attn_proj_bias_dropped', KERNELS,
      "out_bias=w_f @ attn.proj.bias + b_f)",
      "out_bias=b_f)",
      'merged attention: proj bias not carried through final into the output bias'),
    M('merged_attn_gamma_not_on_bias', KERNELS,
      'w_f, b_f = w_f * gamma.reshape(-1, 1), b_f * gamma.reshape(-1)',
      'w_f, b_f = w_f * gamma.reshape(-1, 1), b_f',
      "merged attention: the layer scale folded into final's weight but not its bias"),
    M('plain_softmax_to_sigmoid', ATTENTION,
      'scores = scores.softmax(dim=1)',
      'scores = scores.sigmoid()',
      'plain attention, softmax form: softmax over the size-1 axis replaced by sigmoid'),
    M('plain_l2_over_tokens_dropped', ATTENTION,
      'scores = scores / scores.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]',
      'scores = scores',
      'plain attention, l2 form: the L2 normalisation of the scores over the tokens dropped'),
    M('plain_query_normalize_dropped', ATTENTION,
      'query = F.normalize(_pointwise(x, self.to_query), dim=1)',
      'query = _pointwise(x, self.to_query)',
      'plain attention: the per-token L2 normalisation of the query dropped'),
    M('attn_norm_code_check_dropped', ATTENTION,
      'if theirs != self.attn_norm:',
      'if False:',
      'load_state_dict accepts weights of the other attention form'),
    # ---------------------------------------------- the fast MLPs and their backward
    M('blocked_forward_relu', KERNELS,
      'torch.ops.aten.gelu_(h)',
      'torch.relu_(h)',
      'blocked inference MLP: GELU replaced by ReLU'),
    M('blocked_forward_tanh_gelu', KERNELS,
      'torch.ops.aten.gelu_(h)',
      "torch.ops.aten.gelu_(h, approximate='tanh')",
      'blocked inference MLP: exact GELU replaced by its tanh approximation'),
    M('blocked_forward_ragged_block_dropped', KERNELS,
      'for i in range(0, rows.shape[0], step):',
      'for i in range(0, rows.shape[0] - step + 1, step):',
      'blocked MLP forward: the last, partial row block never computed'),
    M('blocked_backward_gelu_grad_relu', KERNELS,
      'torch.ops.aten.gelu_backward.grad_input(dh, h, grad_input=dh)',
      'dh.mul_(h > 0)',
      "blocked backward: GELU's derivative replaced by ReLU's"),
    M('blocked_backward_recompute_relu', KERNELS,
      'torch.ops.aten.gelu.out(h, out=g)',
      'torch.clamp(h, min=0, out=g)',
      'blocked backward: the recomputed hidden activation uses ReLU instead of GELU'),
    M('blocked_backward_dgamma_bias_dropped', KERNELS,
      'dgamma = (w2 * dw2s).sum(1) + b2 * dy_sum',
      'dgamma = (w2 * dw2s).sum(1)',
      "blocked backward: the layer scale's gradient loses its b2 * dy_sum term"),
    M('blocked_backward_dw2_gamma_dropped', KERNELS,
      'return dx, dy, dw1, db1, dw2s * gamma[:, None],',
      'return dx, dy, dw1, db1, dw2s,',
      "blocked backward: fc2's weight gradient not multiplied by the layer scale"),
    M('inference_mlp_gamma_not_on_bias', KERNELS,
      'w2t, b2 = w2t * scale.reshape(1, -1), b2 * scale.reshape(-1)',
      'w2t, b2 = w2t * scale.reshape(1, -1), b2',
      "inference MLP: the layer scale applied to fc2's weight but not its bias"),
    M('training_mlp_gamma_not_on_bias', KERNELS,
      '(w2 * gamma[:, None]).t(), b2 * gamma, out,',
      '(w2 * gamma[:, None]).t(), b2, out,',
      "CPU training MLP: the layer scale not applied to fc2's bias"),
    M('blocked_forward_kept_hidden_after_gelu', KERNELS,
      'h = F.gelu(torch.addmm(b1, rows[i:i + step], w1t, out=hidden[i:i + step]))',
      'h = torch.ops.aten.gelu_(torch.addmm(b1, rows[i:i + step], w1t, out=hidden[i:i + step]))',
      'CPU training MLP: the hidden activation kept for backward after GELU, not before'),
    M('blocked_backward_kept_hidden_first_block', KERNELS,
      'h = hidden[rows]',
      'h = hidden[:xb.shape[0]]',
      "blocked backward: every block reads the first block's kept hidden activation"),
    # ---------------------------------------------- the channels_last training BatchNorm
    M('clbn_mean_correction_dropped', KERNELS,
      'mean.add_(dev.sum(0).div_(n))',
      'pass',
      "channels_last BatchNorm: the mean keeps its summation's rounding (dead channels off)"),
    M('clbn_one_pass_variance', KERNELS,
      'var = dev.square_().sum(0).div_(n)',
      'var = rows.square().sum(0).div_(n).sub_(mean * mean)',
      'channels_last BatchNorm: the variance as E[x^2] - mean^2 (cancels for large means)'),
    M('clbn_naive_statistics', KERNELS,
      'return channels_last_batch_norm(norm, x)',
      'return norm(x)',
      "training BatchNorm on channels_last maps: PyTorch's naively summed statistics"),
    M('clbn_eps_dropped', KERNELS,
      '(var + eps).rsqrt()',
      'var.rsqrt()',
      "channels_last BatchNorm backward: eps dropped from 1/std"),
    M('clbn_backward_mean_dropped', KERNELS,
      'mean, invstd, True, ctx.eps,',
      'torch.zeros_like(mean), invstd, True, ctx.eps,',
      'channels_last BatchNorm backward: the inputs not centred by the batch mean'),
    M('clbn_running_var_biased', KERNELS,
      'var * (n / (n - 1))',
      'var',
      'channels_last BatchNorm: the running variance updated with the biased variance'),
    M('clbn_momentum_ignored', KERNELS,
      'norm.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)',
      'norm.running_mean.copy_(mean)',
      'channels_last BatchNorm: the running mean replaced instead of averaged'),
    M('clbn_cumulative_average_ignored', KERNELS,
      'momentum = 1.0 / float(norm.num_batches_tracked)',
      'pass',
      'channels_last BatchNorm: momentum=None (cumulative average) leaves the running stats'),
    M('plain_module_on_channels_last', KERNELS,
      'return module(x.contiguous() if module.training else x)',
      'return module(x)',
      "training: modules that run as themselves get channels_last maps (PyTorch's naive BN)"),
    M('downsample_norm_skipped', KERNELS,
      'return batch_norm(module.norm, module.proj(x))',
      'return module.proj(x)',
      'CPU training: the downsampling BatchNorm skipped'),
    M('clbn_batches_not_counted', KERNELS,
      'norm.num_batches_tracked.add_(1)',
      'pass',
      'channels_last BatchNorm: num_batches_tracked not counted'),
    M('needs_autograd_ignores_parameters', KERNELS,
      'x.requires_grad or any(p.requires_grad for p in module.parameters()))',
      'x.requires_grad)',
      'fast forms take the no-grad path when only parameters need gradients'),
    M('fast_form_ignores_dropout', KERNELS,
      'isinstance(block.drop_path, nn.Identity) and block.linear.drop.p == 0)',
      'isinstance(block.drop_path, nn.Identity))',
      "CPU training fast form taken with dropout > 0, which it does not apply"),
    # ---------------------------------------------- the deploy fold
    M('fold_bn_eps_dropped', FOLD,
      'torch.rsqrt(bn.running_var + bn.eps)',
      'torch.rsqrt(bn.running_var)',
      "deploy fold: BatchNorm's eps dropped"),
    M('fold_bn_shift_ignores_weight', FOLD,
      '- bn.running_mean * scale',
      '- bn.running_mean * inv_std',
      "deploy fold: the shift uses 1/std instead of weight/std"),
    # conv-then-BN is torch's fuse_conv_bn_eval: its maths is torch's to test, the call ours
    M('fuse_conv_bn_bn_dropped', FOLD,
      'return fuse_conv_bn_eval(conv, bn)',
      'return copy.deepcopy(conv)',
      "deploy fold (conv then BN): the BN removed without folding it into the conv"),
    M('fuse_bn_conv1x1_shift_dropped', FOLD,
      'fused.bias.copy_(_bias(conv) + w @ shift)',
      'fused.bias.copy_(_bias(conv))',
      "deploy fold (BN then 1x1 conv): the BN's shift (w @ shift) dropped from the bias"),
    M('scaled_output_bias_unscaled', FOLD,
      'scaled.bias.copy_(layer.bias * g)',
      'scaled.bias.copy_(layer.bias)',
      "layer-scale fold: the bias of the scaled layer not scaled"),
    M('conv_encoder_layer_scale_not_folded', BACKBONE,
      '        self.pwconv2 = scaled_output(self.pwconv2, self.layer_scale.gamma)\n',
      '',
      "ConvEncoder deploy: layer scale removed without folding it into pwconv2"),
    M('conv_encoder_layer_scale_twice', BACKBONE,
      '        self.layer_scale = nn.Identity()\n',
      '',
      "ConvEncoder deploy: layer scale folded into pwconv2 and also kept (applied twice)"),
    M('swiftformer_block_ls1_not_folded', BACKBONE,
      'self.attn.final = scaled_output(self.attn.final, self.layer_scale_1.gamma)',
      'self.attn.final = self.attn.final',
      "SwiftFormerBlock deploy: attention's layer scale removed without folding"),
    # ---------------------------------------------- the output layout
    M('out_format_always_channels_last', BACKBONE,
      'out_format = (torch.channels_last if channels_last or',
      'out_format = (torch.channels_last if True or',
      'features always channels_last, whatever the caller (mmcv RoIAlign reads NCHW)'),
    M('out_format_ignores_channels_last_input', BACKBONE,
      'channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()',
      'channels_last = False',
      'channels_last input gives NCHW features (the caller\'s layout not kept)'),
    # ---------------------------------------------- checkpoint conversion
    M('official_norm_index', PRETRAINED,
      "k = f'norm{int(m.group(1)) // 2}.{m.group(2)}'",
      "k = f'norm{int(m.group(1)) // 1}.{m.group(2)}'",
      'official detection branch: norm{2i} read as norm{2i} instead of norm{i}'),
    M('official_downsample_index', PRETRAINED,
      "f'stages.{n // 2 + 1}.downsample.{rest}')\n    m = re.match(r'^norm",
      "f'stages.{n // 2}.downsample.{rest}')\n    m = re.match(r'^norm",
      "official layout: network.{2i-1} (Embedding) mapped to the wrong stage's downsample"),
    M('ddp_module_prefix_kept', PRETRAINED,
      "sd[k[len('module.'):] if k.startswith('module.') else k] = v",
      'sd[k] = v',
      "DDP checkpoints: the 'module.' prefix not stripped"),
    M('load_pretrained_prefix_ignored', PRETRAINED,
      '    if prefix:\n        sd = {k[len(prefix):]',
      '    if False:\n        sd = {k[len(prefix):]',
      "load_pretrained: init_cfg's prefix ignored"),
    M('init_weights_prefix_dropped', BACKBONE,
      "prefix=init_cfg.get('prefix'),",
      'prefix=None,',
      "SwiftFormer.init_weights: init_cfg's prefix not passed to load_pretrained"),
    M('layout_attn_norm_emptied', PRETRAINED,
      "LAYOUT_ATTN_NORM = {'huggingface': 'softmax'}",
      'LAYOUT_ATTN_NORM = {}',
      "transformers' layout no longer implies the softmax attention form"),
    M('meta_attn_norm_ignored', PRETRAINED,
      "if isinstance(meta, dict) and meta.get('attn_norm'):",
      'if False:',
      "meta['attn_norm'] of converted checkpoints ignored"),
    # ---------------------------------------------- RoIAlign
    M('roi_outside_mask_dropped', ROI,
      'weights = torch.stack([1 - frac, frac], -1) * inside[..., None]',
      'weights = torch.stack([1 - frac, frac], -1)',
      'RoIAlign: samples outside the image not zeroed'),
    M('roi_inside_lower_bound', ROI,
      'inside = (c >= -1.0) & (c <= size)',
      'inside = (c >= 0.0) & (c <= size)',
      "RoIAlign: samples in [-1, 0) dropped instead of read at the border (mmcv's rule)"),
    M('roi_ceil_to_round', ROI,
      'torch.ceil(roi_h / ph).long(), torch.ceil(roi_w / pw).long()',
      'torch.round(roi_h / ph).long(), torch.round(roi_w / pw).long()',
      'RoIAlign: adaptive sample count rounded instead of ceil'),
    M('roi_batch_offset_dropped', ROI,
      'batch[chunk].view(k, 1, 1, 1, 1, 1, 1) * (h * w)',
      'batch[chunk].view(k, 1, 1, 1, 1, 1, 1) * 0',
      'RoIAlign: batch offset dropped (every RoI reads image 0)'),
    M('roi_batch_offset_wrong', ROI,
      'batch[chunk].view(k, 1, 1, 1, 1, 1, 1) * (h * w)',
      'batch[chunk].view(k, 1, 1, 1, 1, 1, 1) * (h * (w - 1))',
      'RoIAlign: batch offset of h*(w-1) pixels instead of h*w'),
    M('roi_aligned_offset_dropped', ROI,
      'offset = 0.5 if aligned else 0.0',
      'offset = 0.0',
      'RoIAlign(aligned=True): the half-pixel offset dropped'),
    M('roi_not_aligned_min_size_dropped', ROI,
      'roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)',
      'pass',
      'RoIAlign(aligned=False): RoIs under one pixel not widened to one'),
    M('roi_rois_not_detached', ROI,
      'rois = rois.detach()',
      'rois = rois',
      'RoIAlign: rois not detached (a gradient reaches the boxes, unlike mmcv)'),
)


# ------------------------------------------------------------------ the copy
def repo_files(repo: str) -> List[str]:
    """Tracked and untracked-not-ignored files (so never .venv), that exist."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=repo,
                         check=True, capture_output=True).stdout.decode()
    return sorted(f for f in set(out.split('\0'))
                  if f and os.path.isfile(os.path.join(repo, f)))


def snapshot(repo: str, dest: str) -> None:
    """One consistent copy of the working tree (others may be editing it)."""
    for rel in repo_files(repo):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(repo, rel), target)
    with open(os.path.join(dest, GUARD_PLUGIN + '.py'), 'w') as f:
        f.write(GUARD_SOURCE)


def snippet_problems(root: str, mutants: Sequence[Mutant]) -> List[str]:
    """Every mutant whose snippet is not in its file exactly once."""
    problems = []
    for m in mutants:
        path = os.path.join(root, m.path)
        if not os.path.isfile(path):
            problems.append(f'{m.name}: {m.path} does not exist')
            continue
        n = open(path).read().count(m.find)
        if n != 1:
            problems.append(f'{m.name}: snippet found {n} times in {m.path} (need 1): {m.find!r}')
    return problems


def apply(root: str, m: Mutant) -> None:
    path = os.path.join(root, m.path)
    text = open(path).read()
    if text.count(m.find) != 1:
        raise ValueError(f'{m.name}: snippet not found exactly once in {m.path}: {m.find!r}')
    with open(path, 'w') as f:
        f.write(text.replace(m.find, m.replace))


# ------------------------------------------------------------------ running
def test_files(root: str, tests: Sequence[str], m: Optional[Mutant]) -> List[str]:
    """``tests`` that exist (warning about the others), those most likely to
    kill ``m`` first."""
    present = []
    for t in tests:
        if os.path.exists(os.path.join(root, t)):
            present.append(t)
        else:
            print(f'warning: {t} does not exist; skipped', file=sys.stderr, flush=True)
    first = FIRST_TESTS.get(m.path, ()) if m else ()
    return [t for t in first if t in present] + [t for t in present if t not in first]


def pytest_env(root: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=root)
    env.pop('PYTHONSTARTUP', None)
    return env


def run_pytest(root: str, files: Sequence[str], timeout: float, deselect: Sequence[str] = (),
               stop_first: bool = True) -> subprocess.CompletedProcess:
    """pytest on ``files`` in the copy ``root``; ``-x`` unless not ``stop_first``."""
    cmd = [PYTHON, '-m', 'pytest', *PYTEST_ARGS, *(['-x'] if stop_first else []),
           '-p', GUARD_PLUGIN, *[f'--deselect={t}' for t in deselect], *files]
    try:
        return subprocess.run(cmd, cwd=root, env=pytest_env(root), text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
        return subprocess.CompletedProcess(cmd, -1, out + f'\ntimed out after {timeout:.0f} s', '')


def failures(output: str) -> List[str]:
    """The ``FAILED``/``ERROR`` test ids of pytest's short summary, in order."""
    return re.findall(r'^(?:FAILED|ERROR) (\S+)', output, re.MULTILINE)


def first_failure(output: str) -> Optional[str]:
    found = failures(output)
    return found[0] if found else None


def verdict(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    if 'mutation_check guard:' in out:
        return 'error'
    if proc.returncode == 0:
        return 'survived'
    if proc.returncode == 1:
        return 'killed'
    return 'error'


@dataclass
class Result:
    mutant: Mutant
    verdict: str
    detail: str
    seconds: float
    output: str


def check(m: Mutant, base: str, tests: Sequence[str], timeout: float,
          deselect: Sequence[str] = ()) -> Result:
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix=f'mmswift-mutant-{m.name}-')
    try:
        root = os.path.join(work, 'repo')
        shutil.copytree(base, root)
        apply(root, m)
        proc = run_pytest(root, test_files(root, tests, m), timeout, deselect)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    v, out = verdict(proc), proc.stdout + proc.stderr
    if v == 'killed':
        detail = f'by {first_failure(out) or "a failing test"}'
    elif v == 'error':
        last = [line for line in out.strip().splitlines() if line.strip()][-1:] or ['']
        detail = f'pytest exit {proc.returncode}: {last[0][:200]}'
    else:
        detail = f'equivalent: {m.equivalent}' if m.equivalent else ''
    return Result(m, v, detail, time.monotonic() - start, out)


def report_line(r: Result) -> str:
    tail = f' ({r.detail})' if r.detail else ''
    return f'{r.verdict.upper()} {r.mutant.name}{tail} [{r.seconds:.0f} s]'


# ------------------------------------------------------------------ preflight
def check_isolation(base: str) -> None:
    """The copy, not the working tree, is what ``import mmswift`` loads, and
    a broken copy fails to import (so a mutant cannot pass by being unseen)."""
    code = 'import mmswift, os; print(os.path.abspath(mmswift.__file__))'
    work = tempfile.mkdtemp(prefix='mmswift-mutant-isolation-')
    try:
        root = os.path.join(work, 'repo')
        shutil.copytree(base, root)
        proc = subprocess.run([PYTHON, '-c', code], cwd=root, env=pytest_env(root), text=True,
                              capture_output=True)
        where = proc.stdout.strip()
        if proc.returncode or not where.startswith(root + os.sep):
            sys.exit(f'mutation_check: the copy is not what gets imported: {where or proc.stderr}')
        with open(os.path.join(root, 'mmswift', '__init__.py'), 'a') as f:
            f.write('\nraise ImportError("mutation_check: deliberately broken copy")\n')
        proc = subprocess.run([PYTHON, '-c', code], cwd=root, env=pytest_env(root), text=True,
                              capture_output=True)
        if proc.returncode == 0 or 'deliberately broken copy' not in proc.stderr:
            sys.exit('mutation_check: a broken copy still imported: the working tree leaks in')
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_baseline(base: str, tests: Sequence[str], timeout: float) -> List[str]:
    """The tests that fail on the unmutated copy (deselected for the mutants,
    so that they cannot 'kill' anything); exits on collection or usage errors."""
    start = time.monotonic()
    work = tempfile.mkdtemp(prefix='mmswift-mutant-baseline-')
    try:
        root = os.path.join(work, 'repo')
        shutil.copytree(base, root)
        proc = run_pytest(root, test_files(root, tests, None), timeout, stop_first=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = proc.stdout + proc.stderr
    failing = failures(out)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not failing):
        print(out[-4000:], file=sys.stderr)
        print(f'mutation_check: pytest cannot run the unmutated copy (exit {proc.returncode}); '
              f'fix that first', file=sys.stderr)
        sys.exit(2)
    seconds = time.monotonic() - start
    if failing:
        print(f'baseline: {len(failing)} test(s) fail without any mutant; deselected for every '
              f'mutant [{seconds:.0f} s]:\n  ' + '\n  '.join(failing), flush=True)
    else:
        print(f'baseline: the unmutated copy passes [{seconds:.0f} s]', flush=True)
    return failing


# ------------------------------------------------------------------ main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--list', action='store_true', help='print the mutants and exit')
    p.add_argument('-k', dest='keywords', action='append', default=[], metavar='NAME',
                   help='only mutants whose name contains NAME (repeatable: any of them)')
    p.add_argument('--jobs', type=int, default=1, help='mutants checked at once (default 1)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--tests', nargs='+', help=f'test files (default: {" ".join(DEFAULT_TESTS)})')
    group.add_argument('--all', action='store_true', help='the whole quick tier (tests/test_*.py)')
    p.add_argument('--timeout', type=float, default=1800, help='seconds per pytest run')
    p.add_argument('--skip-baseline', action='store_true',
                   help='do not first run the tests on the unmutated copy')
    p.add_argument('--log-dir', help="write each mutant's pytest output to LOG_DIR/NAME.log")
    return p.parse_args(argv)


def chosen_tests(args: argparse.Namespace, root: str) -> List[str]:
    if args.all:
        folder = os.path.join(root, 'tests')
        return sorted(f'tests/{f}' for f in os.listdir(folder)
                      if f.startswith('test_') and f.endswith('.py'))
    return list(args.tests or DEFAULT_TESTS)


def print_list(mutants: Sequence[Mutant]) -> None:
    for m in mutants:
        note = f' [equivalent: {m.equivalent}]' if m.equivalent else ''
        print(f'{m.name:42s} {m.path}: {m.what}{note}')


def summary(results: Sequence[Result]) -> str:
    count = {v: sum(r.verdict == v for r in results) for v in ('killed', 'survived', 'error')}
    equivalent = sum(r.verdict == 'survived' and bool(r.mutant.equivalent) for r in results)
    note = f' ({equivalent} known equivalent)' if equivalent else ''
    return (f'{len(results)} mutants: {count["killed"]} killed, {count["survived"]} survived'
            f'{note}, {count["error"]} errors')


def failed(results: Sequence[Result]) -> bool:
    return any(r.verdict == 'error' or (r.verdict == 'survived' and not r.mutant.equivalent)
               for r in results)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    mutants = [m for m in MUTANTS if not args.keywords or any(k in m.name for k in args.keywords)]
    problems = snippet_problems(REPO, MUTANTS)
    if problems:
        print('mutation_check: the mutant list no longer matches the code:\n  '
              + '\n  '.join(problems), file=sys.stderr)
        return 2
    if args.list:
        print_list(mutants)
        return 0
    if not mutants:
        print(f'mutation_check: no mutant name contains any of {args.keywords}', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix='mmswift-mutation-base-') as work:
        base = os.path.join(work, 'repo')
        snapshot(REPO, base)
        tests = chosen_tests(args, base)
        check_isolation(base)
        deselect = [] if args.skip_baseline else check_baseline(base, tests, args.timeout)
        if args.log_dir:
            os.makedirs(args.log_dir, exist_ok=True)
        results = []

        def one(m: Mutant) -> Result:
            r = check(m, base, tests, args.timeout, deselect)
            print(report_line(r), flush=True)
            if args.log_dir:
                with open(os.path.join(args.log_dir, f'{m.name}.log'), 'w') as f:
                    f.write(r.output)
            return r

        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(one, mutants))
    print(summary(results) + (f'; {len(deselect)} test(s) failing unmutated deselected'
                               if deselect else ''))
    return 1 if failed(results) else 0


if __name__ == '__main__':
    sys.exit(main())
