"""Latency, throughput, memory, FLOPs of backbones and whole models.

Entries are written ``MODEL[:FORM[:PRECISION]]``:

* MODEL: ``xs s l1 l3`` (mmswift SwiftFormer backbones), ``ref-xs`` ...
  ``ref-l3`` (transformers' ``SwiftFormerModel``, the straightforward
  reference; it gets the same weights as ``l1`` etc., and the outputs are
  checked equal), ``resnet18 resnet50`` (mmdet's ResNet),
  ``efficientformer-l1 efficientformer-l3 poolformer-s12 poolformer-s24``
  (mmpretrain, when installed), or ``maskrcnn-l1``, ``maskrcnn-r50``,
  ``fpn-l1``, ``fpn-r50`` (whole detectors / segmentors, predict mode), or
  any det/seg config path (``configs/det/...py``);
* FORM: ``train`` (default) or ``deploy`` (BN and layer scale folded);
  ``cl`` appended (``deploy-cl``) runs in channels_last;
* PRECISION: ``fp32`` (default) or ``amp`` (bf16 autocast on CPU, fp16 on
  CUDA).

``compare`` times all entries interleaved (round robin, one call each per
round) so that machine noise falls on all of them alike, and reports each
median as a ratio to the first entry.
"""
import gc
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

SWIFT = ('xs', 's', 'l1', 'l3')
PEERS_MMPRETRAIN = {'efficientformer-l1': ('EfficientFormer', dict(arch='l1', out_indices=(0, 1, 2, 3))),
                    'efficientformer-l3': ('EfficientFormer', dict(arch='l3', out_indices=(0, 1, 2, 3))),
                    'poolformer-s12': ('PoolFormer', dict(arch='s12', out_indices=(0, 2, 4, 6))),
                    'poolformer-s24': ('PoolFormer', dict(arch='s24', out_indices=(0, 2, 4, 6)))}


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name'))
    except (OSError, StopIteration):
        pass
    desc = f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads'
    if torch.cuda.is_available():
        desc += f', GPU {torch.cuda.get_device_name()}'
    return desc


@dataclass
class Entry:
    spec: str
    model: str
    form: str = 'train'
    precision: str = 'fp32'

    @classmethod
    def parse(cls, spec: str) -> 'Entry':
        parts = spec.split(':')
        if '::' in spec and spec.split(':')[0] in ('mmdet', 'mmseg'):
            raise ValueError(f'{spec}: give mmdet/mmseg configs by path')
        model = parts[0] if parts[0].endswith('.py') else parts[0].lower()
        form = parts[1] if len(parts) > 1 and parts[1] else 'train'
        precision = parts[2] if len(parts) > 2 and parts[2] else 'fp32'
        e = cls(spec, model, form, precision)
        if e.form not in ('train', 'deploy', 'train-cl', 'deploy-cl'):
            raise ValueError(f'{spec}: form must be train, deploy, train-cl or deploy-cl')
        if e.precision not in ('fp32', 'amp'):
            raise ValueError(f'{spec}: precision must be fp32 or amp')
        return e

    @property
    def channels_last(self) -> bool:
        return self.form.endswith('-cl')

    @property
    def deploy(self) -> bool:
        return self.form.startswith('deploy')


@dataclass
class Built:
    entry: Entry
    module: nn.Module
    call: Callable[[], object]
    params: int
    extra: Dict[str, object] = field(default_factory=dict)


def _random_reference(arch: str, seed: int = 0):
    """transformers' SwiftFormerModel with random weights and BN statistics."""
    from transformers import SwiftFormerConfig, SwiftFormerModel

    from mmswift.models import SwiftFormer
    a = SwiftFormer.arch_settings[arch]
    torch.manual_seed(seed)
    ref = SwiftFormerModel(SwiftFormerConfig(depths=a['layers'], embed_dims=a['embed_dims']))
    with torch.no_grad():
        for n, b in ref.named_buffers():
            if n.endswith('running_var'):
                b.uniform_(0.5, 1.5)
            elif n.endswith('running_mean'):
                b.normal_(0, 0.1)
    return ref.eval()


def _swiftformer_like_reference(arch: str) -> nn.Module:
    """mmswift's backbone with the reference's weights (softmax form, no output norms)."""
    from mmswift.models import SwiftFormer
    from mmswift.models.pretrained import convert_state_dict
    model = SwiftFormer(arch, out_norm_cfg=None, attn_norm='softmax')
    sd, _, _ = convert_state_dict(_random_reference(arch).state_dict())
    model.load_state_dict(sd)
    return model.eval()


WHOLE_MODELS = {
    'maskrcnn-r50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'fpn-r50': 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py',
    **{f'maskrcnn-{v}': f'configs/det/mask-rcnn_swiftformer-{v}_fpn_1x_coco.py' for v in SWIFT},
    **{f'fpn-{v}': f'configs/seg/fpn_swiftformer-{v}_8xb4-40k_ade20k-512x512.py' for v in SWIFT},
}


def _config_path(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if '::' in path:  # a config shipped inside mmdet / mmseg
        pkg, rel = path.split('::')
        mod = __import__(pkg)
        return os.path.join(os.path.dirname(mod.__file__), '.mim', 'configs', rel)
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(root, path)


def _whole_model(config: str, hw: Tuple[int, int]):
    """A detector or segmentor from a config (random weights) and a data sample."""
    from mmswift.apis import build_model_from_config
    model, cfg = build_model_from_config(_config_path(config))
    if cfg.get('default_scope', 'mmdet') == 'mmseg':
        from mmseg.structures import SegDataSample as Sample
    else:
        from mmdet.structures import DetDataSample as Sample
    h, w = hw
    sample = Sample()
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                             batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
    return model, sample


def _synthetic_train_batch(model: nn.Module, sample, hw: Tuple[int, int], batch: int):
    """A batch with ground truth for ``train_step``: boxes and masks (det) or labels (seg)."""
    from mmengine.structures import InstanceData, PixelData
    h, w = hw
    g = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        s = sample.clone()
        if hasattr(s, 'gt_sem_seg') or type(s).__name__ == 'SegDataSample':
            s.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, h, w), generator=g))
        else:
            from mmdet.structures.mask import BitmapMasks
            n = 8
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
            wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 16
            boxes = torch.cat([xy, xy + wh], 1)
            masks = np.zeros((n, h, w), np.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                masks[i, y0:y1, x0:x1] = 1
            s.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, 80, (n, ), generator=g),
                                          masks=BitmapMasks(masks, h, w))
        samples.append(s)
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def build_entry(entry: Entry, hw: Tuple[int, int], batch: int, device: str,
                train_step: bool = False) -> Built:
    """The module and a zero-argument call that runs one timed inference
    (or, with ``train_step``, one training iteration of a whole model)."""
    name = entry.model
    # the same input for every entry, so outputs can be compared
    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(device)
    extra: Dict[str, object] = {}
    if name in SWIFT:
        # the same random weights as ref-<arch>, so ratios compare equal math
        module = _swiftformer_like_reference(name)
    elif name.startswith('ref-') and name[4:] in SWIFT:
        ref = _random_reference(name[4:])

        class _HiddenStates(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, t):
                hs = self.m(t, output_hidden_states=True).hidden_states
                return hs[1], hs[3], hs[5], hs[7]

        module = _HiddenStates(ref)
    elif name in ('resnet18', 'resnet50'):
        from mmdet.models.backbones import ResNet
        module = ResNet(depth=int(name[6:]), out_indices=(0, 1, 2, 3))
    elif name in PEERS_MMPRETRAIN:
        try:
            import mmpretrain.models  # noqa: F401
            from mmpretrain.registry import MODELS
        except ImportError as e:
            raise ImportError(f'{name} needs mmpretrain (pip install mmpretrain)') from e
        cls, kwargs = PEERS_MMPRETRAIN[name]
        module = MODELS.build(dict(type=cls, **kwargs))
    elif name in WHOLE_MODELS or name.endswith('.py'):
        module, sample = _whole_model(WHOLE_MODELS.get(name, entry.spec.split(':')[0]), hw)
    else:
        raise ValueError(f'unknown model {name!r}')
    module.to(device)
    module.eval()  # not chained: some OpenMMLab train() overrides return None
    if entry.deploy:
        if not hasattr(module, 'switch_to_deploy'):
            if hasattr(getattr(module, 'backbone', None), 'switch_to_deploy'):
                module.backbone.switch_to_deploy()
            else:
                raise ValueError(f'{entry.spec}: only SwiftFormer has a deploy form')
        else:
            module.switch_to_deploy()
    if entry.channels_last:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = sum(p.numel() for p in module.parameters())
    amp_dtype = torch.bfloat16 if device == 'cpu' else torch.float16
    amp = entry.precision == 'amp'

    if train_step:
        if not (name in WHOLE_MODELS or name.endswith('.py')):
            raise ValueError(f'{entry.spec}: --train-step times whole models (configs)')
        from mmengine.optim import build_optim_wrapper
        from mmengine.config import Config
        cfg = Config.fromfile(_config_path(WHOLE_MODELS.get(name, entry.spec.split(':')[0])))
        optim_cfg = dict(cfg.optim_wrapper)
        if amp:
            optim_cfg.update(type='AmpOptimWrapper', dtype='bfloat16' if device == 'cpu' else None)
        module.train()
        optim = build_optim_wrapper(module, optim_cfg)
        data = _synthetic_train_batch(module, sample, hw, batch)

        def call():
            return module.train_step(data, optim)
    elif name in WHOLE_MODELS or name.endswith('.py'):
        def call():
            with torch.no_grad(), torch.autocast(device, dtype=amp_dtype, enabled=amp):
                return module.predict(x, [sample] * batch)
    else:
        def call():
            with torch.no_grad(), torch.autocast(device, dtype=amp_dtype, enabled=amp):
                return module(x)
    built = Built(entry, module, call, params, extra)
    built.extra['input'] = x
    return built


class _PeakRSS:
    """Peak resident memory of this process while the block runs (CPU)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0

    def _rss(self) -> int:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    def __enter__(self):
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, self._rss())
                time.sleep(self.interval)
        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_call(call: Callable, device: str) -> float:
    _sync(device)
    t = time.perf_counter()
    call()
    _sync(device)
    return time.perf_counter() - t


def summarize(times: Sequence[float]) -> Dict[str, float]:
    s = sorted(times)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return dict(median_s=statistics.median(s), p90_s=p90, min_s=s[0], runs=len(s))


def flops_and_params(module: nn.Module, x: torch.Tensor) -> Dict[str, Optional[float]]:
    """mmengine's analysis (counts multiply-adds as FLOPs, as mmdet/mmseg report)."""
    from mmengine.analysis import get_model_complexity_info
    try:
        info = get_model_complexity_info(module, inputs=(x, ), show_table=False, show_arch=False)
        return dict(flops_g=info['flops'] / 1e9, params_m=info['params'] / 1e6)
    except Exception as e:  # some peers' ops are not countable
        return dict(flops_g=None, params_m=sum(p.numel() for p in module.parameters()) / 1e6,
                    flops_error=f'{type(e).__name__}: {e}')


def compare(specs: Sequence[str], hw: Tuple[int, int] = (800, 1344), batch: int = 1,
            device: str = 'cpu', warmup: int = 2, runs: int = 5, compile: bool = False,
            flops: bool = False, log: Callable[[str], None] = print,
            train_step: bool = False) -> Dict[str, object]:
    """Time ``specs`` interleaved; ratios are to the first entry's median."""
    entries = [Entry.parse(s) for s in specs]
    built: List[Built] = []
    for e in entries:
        try:
            b = build_entry(e, hw, batch, device, train_step)
        except ImportError as err:
            log(f'skipped {e.spec}: {err}')
            continue
        if compile:
            b.module = torch.compile(b.module)
        built.append(b)
    if not built:
        raise RuntimeError('no entry could be built')
    # the reference and mmswift's backbone with its weights must agree
    checks = {}
    for b in ([] if train_step else built):
        ref = next((r for r in built if r.entry.model == f'ref-{b.entry.model}'
                    and r.entry.precision == 'fp32'), None)
        if ref is not None and b.entry.precision == 'fp32':
            with torch.no_grad():
                ours, theirs = b.call(), ref.call()
            err = max(float((u.float() - v.float()).abs().max() / v.float().abs().max())
                      for u, v in zip(ours, theirs))
            checks[b.entry.spec] = err
    memory: Dict[str, int] = {}
    for b in built:  # warm-up, and peak memory of one call
        for _ in range(warmup):
            b.call()
        gc.collect()
        if device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            b.call()
            memory[b.entry.spec] = torch.cuda.max_memory_allocated()
        else:
            with _PeakRSS() as peak:
                b.call()
            memory[b.entry.spec] = peak.peak - peak.base
    times: Dict[str, List[float]] = {b.entry.spec: [] for b in built}
    for r in range(runs):
        for b in built:
            times[b.entry.spec].append(time_call(b.call, device))
        log(f'round {r + 1}/{runs} done')
    base = built[0].entry.spec
    base_median = statistics.median(times[base])
    rows = []
    for b in built:
        s = summarize(times[b.entry.spec])
        row = dict(entry=b.entry.spec, model=b.entry.model, form=b.entry.form,
                   precision=b.entry.precision, params_m=b.params / 1e6, **s,
                   ratio=s['median_s'] / base_median,
                   throughput_img_s=batch / s['median_s'],
                   peak_mem_mb=memory[b.entry.spec] / 2**20)
        if b.entry.spec in checks:
            row['max_rel_diff_vs_reference'] = checks[b.entry.spec]
        if flops and not train_step:
            row.update(flops_and_params(b.module, b.extra['input']))
        rows.append(row)
    return dict(machine=machine_description(), device=device, input_hw=list(hw),
                batch=batch, warmup=warmup, runs=runs, compile=compile, baseline=base,
                measured='train_step' if train_step else 'inference',
                interleaved=True, results=rows)


def format_table(report: Dict[str, object]) -> str:
    head = (f'{"entry":<24}{"params(M)":>10}{"median(s)":>11}{"p90(s)":>9}'
            f'{"img/s":>8}{"mem(MB)":>9}{"ratio":>8}')
    lines = [f'# {report.get("measured", "inference")}; {report["machine"]}; device {report["device"]}; input '
             f'{report["input_hw"][0]}x{report["input_hw"][1]}, batch {report["batch"]}; '
             f'median of {report["runs"]} interleaved runs after {report["warmup"]} warm-up',
             head, '-' * len(head)]
    for r in report['results']:
        lines.append(f'{r["entry"]:<24}{r["params_m"]:>10.2f}{r["median_s"]:>11.4f}'
                     f'{r["p90_s"]:>9.4f}{r["throughput_img_s"]:>8.2f}{r["peak_mem_mb"]:>9.0f}'
                     f'{r["ratio"]:>7.2f}x')
        if r.get('flops_g') is not None:
            lines[-1] += f'  {r["flops_g"]:.1f} GFLOPs'
    lines.append(f'ratios: median time / median of {report["baseline"]}')
    return '\n'.join(lines)
