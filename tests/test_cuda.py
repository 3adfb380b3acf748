"""CUDA: the backbone's forms against the CPU, AMP training steps of both
model types, the AMP config through tools/train.py, CUDA <-> CPU resume,
testing and inference on CUDA, the benchmark, and SyncBN in one process.

Marked ``cuda``: the default run deselects them (setup.cfg), and
``pytest -m cuda`` (``tools/gpu_check.sh``) runs them on a GPU machine.
"""
import json
import os

import pytest
import torch

from mmswift.models import SwiftFormer

from .conftest import randomize_, run_py, tiny_det_config, tiny_seg_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32: TF32 convolutions would differ from the CPU by ~1e-3."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def max_rel(a, b):
    return max(float((u.detach().float().cpu() - v.detach().float().cpu()).abs().max()
                     / u.detach().float().abs().max())
               for u, v in zip(a, b))


@pytest.mark.parametrize('arch', ['xs', 's', 'l1', 'l3'])
def test_backbone_forms_on_cuda_equal_cpu(arch):
    model = randomize_(SwiftFormer(arch), seed=3)
    x = torch.randn(2, 3, 96, 131)
    # training mode (batch statistics), forward and input gradient
    cpu_in = x.clone().requires_grad_(True)
    cpu_train = model.train()(cpu_in)
    # squares: a plain mean after train-mode BN has an exactly zero gradient
    sum(o.square().mean() for o in cpu_train).backward()
    gpu_model = randomize_(SwiftFormer(arch), seed=3).cuda().train()
    gpu_in = x.cuda().requires_grad_(True)
    gpu_train = gpu_model(gpu_in)
    sum(o.square().mean() for o in gpu_train).backward()
    assert max_rel(cpu_train, gpu_train) < 1e-4
    assert max_rel([cpu_in.grad], [gpu_in.grad]) < 1e-4
    # inference: eval training form and deploy form, fp32 and fp16 autocast
    model.eval()
    gpu_model.eval()
    with torch.no_grad():
        cpu_eval = model(x)
        assert max_rel(cpu_eval, gpu_model(x.cuda())) < 1e-4
        gpu_model.switch_to_deploy()
        assert max_rel(cpu_eval, gpu_model(x.cuda())) < 1e-4
        with torch.autocast('cuda', dtype=torch.float16):
            half = gpu_model(x.cuda())
    # fp16 keeps 11 bits of mantissa (~5e-4 per rounding); some 30 layers
    # deep with normalisations between, 2 % of the largest value is the bound.
    # (Autocast runs norms in fp32, so the outputs need not be fp16 tensors.)
    assert all(torch.isfinite(o).all() for o in half)
    assert 0 < max_rel(cpu_eval, half) < 2e-2


def _amp_steps(config: str, hw, steps: int):
    from mmengine.optim import build_optim_wrapper

    from mmswift.analysis.benchmark import synthetic_train_batch, _whole_model
    model, sample = _whole_model(config, hw)
    model.cuda().train()
    optim = build_optim_wrapper(model, dict(type='AmpOptimWrapper', loss_scale='dynamic',
                                            optimizer=dict(type='AdamW', lr=1e-4)))
    data = synthetic_train_batch(sample, hw, 2)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    losses = []
    for _ in range(steps):
        log_vars = model.train_step(data, optim)
        losses.append(float(log_vars['loss']))
    moved = sum(not torch.equal(b, p) for b, p in zip(before, model.backbone.parameters()))
    return losses, moved, optim.loss_scaler


@pytest.mark.parametrize('config,hw,steps', [
    ('configs/det/mask-rcnn_swiftformer-l1_fpn_amp-1x_coco.py', (256, 320), 50),
    ('configs/seg/fpn_swiftformer-l1_8xb4-40k_ade20k-512x512.py', (256, 256), 10)])
def test_amp_training_steps_on_cuda(config, hw, steps):
    losses, moved, scaler = _amp_steps(config, hw, steps)
    assert all(torch.isfinite(torch.tensor(losses))), losses
    # the GradScaler skips steps with inf/nan gradients; it must not skip all
    assert moved > 0 and scaler.get_scale() > 0


def test_amp_config_and_tools_on_cuda(tmp_path):
    """tools/train.py --amp on CUDA, then tools/test.py and the inferencer on
    CUDA, then the CUDA checkpoint resumed on the CPU."""
    config = tiny_det_config(tmp_path, max_epochs=1)
    work = tmp_path / 'work'
    proc = run_py('tools/train.py', config, '--amp', '--work-dir', str(work))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = str(work / 'epoch_1.pth')
    assert os.path.isfile(ckpt)
    weights = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert 'loss_scaler' in weights.get('optimizer', {}) or 'loss_scaler' in weights, \
        'an AMP run checkpoints its loss scaler'
    proc = run_py('tools/test.py', config, ckpt, '--work-dir', str(tmp_path / 'test'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    images = str(tmp_path / 'shapes' / 'val')
    proc = run_py('tools/image_demo.py', images, config, ckpt, '--device', 'cuda',
                  '--out-dir', str(tmp_path / 'vis'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(os.listdir(tmp_path / 'vis' / 'vis')) == 4
    # the CUDA checkpoint resumes on a machine without CUDA
    proc = run_py('tools/train.py', config, '--work-dir', str(work), '--resume', ckpt,
                  '--cfg-options', 'train_cfg.max_epochs=2', env={'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(work / 'epoch_2.pth')


def test_cpu_checkpoint_resumes_on_cuda_and_syncbn_in_one_process(tmp_path):
    """The seg config's head uses SyncBN: one CUDA process runs it as BN, as
    mmengine documents (it reverts SyncBN when not distributed)."""
    config = tiny_seg_config(tmp_path, max_iters=2)
    work = tmp_path / 'work'
    proc = run_py('tools/train.py', config, '--work-dir', str(work),
                  '--cfg-options', "model.decode_head.norm_cfg.type=SyncBN",
                  env={'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_py('tools/train.py', config, '--work-dir', str(work), '--resume',
                  '--cfg-options', 'train_cfg.max_iters=4', 'train_cfg.val_interval=4',
                  "model.decode_head.norm_cfg.type=SyncBN")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'SyncBatchNorm' in log and 'reverted' in log
    assert 'Iter(train) [4/4]' in log and os.path.isfile(work / 'iter_4.pth')


def test_benchmark_on_cuda(tmp_path):
    out = tmp_path / 'b.json'
    proc = run_py('tools/benchmark.py', '--device', 'cuda', 'ref-xs', 'xs',
                  'xs:deploy', 'xs:deploy:amp', '--input', '64', '64', '--batch', '4',
                  '--runs', '2', '--warmup', '1', '--json', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r['entry']: r for r in report['results']}
    assert report['device'] == 'cuda' and 'GPU' in report['machine']
    assert rows['xs']['max_rel_diff_vs_reference'] < 1e-3  # TF32 allowed here
    assert all(r['peak_mem_mb'] > 0 for r in rows.values())
