"""Latency, throughput, memory, FLOPs of backbones and whole models.

Entries are written ``MODEL[:FORM[:PRECISION]]``:

* MODEL: ``xs s l1 l3`` (mmswift SwiftFormer backbones), ``ref-xs`` ...
  ``ref-l3`` (transformers' ``SwiftFormerModel``, the straightforward
  reference; it gets the same weights as ``l1`` etc., and the outputs are
  checked equal), ``resnet18 resnet50`` (mmdet's ResNet),
  ``efficientformer-l1 efficientformer-l3 poolformer-s12 poolformer-s24``
  (mmpretrain), ``timm-xs`` ... ``timm-l3`` (timm's SwiftFormer) and
  ``tv-resnet18 tv-resnet50`` (torchvision) where they import, or
  ``maskrcnn-l1``, ``maskrcnn-r50``, ``maskrcnn-r18``,
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

import torch
import torch.nn as nn

SWIFT = ('xs', 's', 'l1', 'l3')
# mmpretrain's EfficientFormer ends in one attention block whose position
# biases are fixed to a 7x7 map (224x224 inputs only); at dense-prediction
# sizes it is built with that block as a Meta4D block (vit_num=0), and its
# last features reshaped to NCHW before their norm.
_EFFICIENTFORMER = {
    'l1': dict(layers=[3, 2, 6, 4], embed_dims=[48, 96, 224, 448],
               downsamples=[False, True, True, True], vit_num=0),
    'l3': dict(layers=[4, 4, 12, 6], embed_dims=[64, 128, 320, 512],
               downsamples=[False, True, True, True], vit_num=0),
}
PEERS_MMPRETRAIN = {
    'efficientformer-l1': ('EfficientFormer', dict(arch=_EFFICIENTFORMER['l1'], out_indices=(0, 1, 2, 3),
                                                   reshape_last_feat=True)),
    'efficientformer-l3': ('EfficientFormer', dict(arch=_EFFICIENTFORMER['l3'], out_indices=(0, 1, 2, 3),
                                                   reshape_last_feat=True)),
    'poolformer-s12': ('PoolFormer', dict(arch='s12', out_indices=(0, 2, 4, 6))),
    'poolformer-s24': ('PoolFormer', dict(arch='s24', out_indices=(0, 2, 4, 6))),
}


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
    parts: Dict[str, Callable[[], object]] = field(default_factory=dict)


def random_reference(arch: str, seed: int = 0, classifier: bool = False) -> nn.Module:
    """transformers' SwiftFormer (``SwiftFormerModel``, or with ``classifier``
    ``SwiftFormerForImageClassification`` with 10 classes), the straightforward
    port mmswift is checked against, with random weights and BN statistics."""
    from transformers import (SwiftFormerConfig, SwiftFormerForImageClassification,
                              SwiftFormerModel)

    from mmswift.models import SwiftFormer
    a = SwiftFormer.arch_settings[arch]
    torch.manual_seed(seed)
    cls = SwiftFormerForImageClassification if classifier else SwiftFormerModel
    ref = cls(SwiftFormerConfig(depths=a['layers'], embed_dims=a['embed_dims'], num_labels=10))
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
    sd, _, _ = convert_state_dict(random_reference(arch).state_dict())
    model.load_state_dict(sd)
    return model.eval()


_RESNET18_NECK = dict(model=dict(backbone=dict(depth=18),
                                  neck=dict(in_channels=[64, 128, 256, 512])))
# mmswift's det configs extract RoIs with mmswift.SingleRoIExtractor (a fast
# CPU RoIAlign); R50 with the same heads, to compare backbones alone
_MMSWIFT_ROI = dict(model=dict(roi_head=dict(
    bbox_roi_extractor=dict(type='mmswift.SingleRoIExtractor'),
    mask_roi_extractor=dict(type='mmswift.SingleRoIExtractor'))))
WHOLE_MODELS = {
    'maskrcnn-r50': 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
    'maskrcnn-r50-fastroi': ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', _MMSWIFT_ROI),
    'fpn-r50': 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py',
    # mmdet/mmseg ship no R18 Mask R-CNN / Semantic FPN config: R50's with depth 18
    'maskrcnn-r18': ('mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', _RESNET18_NECK),
    'fpn-r18': ('mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py', _RESNET18_NECK),
    **{f'maskrcnn-{v}': f'configs/det/mask-rcnn_swiftformer-{v}_fpn_1x_coco.py' for v in SWIFT},
    **{f'fpn-{v}': f'configs/seg/fpn_swiftformer-{v}_8xb4-40k_ade20k-512x512.py' for v in SWIFT},
}


def _config_path(path: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if '::' in path:  # a config shipped inside mmdet / mmseg
        pkg, rel = path.split('::')
        mod = __import__(pkg)
        return os.path.join(os.path.dirname(mod.__file__), '.mim', 'configs', rel)
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(root, path)


def _whole_model(config, hw: Tuple[int, int]):
    """A detector or segmentor from a config (or ``(config, overrides)``),
    with random weights, and a data sample."""
    import mmswift.models.roi_extractor  # noqa: F401  (registers it, for _MMSWIFT_ROI)
    from mmswift.apis import init_model
    config, overrides = config if isinstance(config, tuple) else (config, None)
    model = init_model(_config_path(config), cfg_options=overrides)
    from mmswift.task import task_of
    if task_of(model.cfg) == 'seg':
        from mmseg.structures import SegDataSample as Sample
    else:
        from mmdet.structures import DetDataSample as Sample
    h, w = hw
    sample = Sample()
    sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                             batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
    return model, sample


def demo_seg_inputs(image_shapes: Sequence[Tuple[int, int]], num_classes: int = 150,
                    seed: int = 0) -> dict:
    """A segmentation batch with random images and label maps, one per
    ``(h, w)``: the mmseg counterpart of ``mmdet.testing.demo_mm_inputs``."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in image_shapes:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w), generator=g))
        s.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        samples.append(s)
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
    return dict(inputs=inputs, data_samples=samples)


def synthetic_train_batch(sample, hw: Tuple[int, int], batch: int,
                          num_classes: Optional[int] = None) -> dict:
    """A batch with ground truth for ``train_step``, of the kind ``sample`` is:
    mmdet's ``demo_mm_inputs`` (boxes and masks) or :func:`demo_seg_inputs`,
    with labels below ``num_classes`` (default COCO's 80, ADE20K's 150)."""
    h, w = hw
    if type(sample).__name__ == 'DetDataSample':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(batch_size=batch, image_shapes=(3, h, w), num_items=[8] * batch,
                              num_classes=num_classes or 80, with_mask=True)
    return demo_seg_inputs([hw] * batch, num_classes=num_classes or 150)


def _num_classes(model: nn.Module) -> Optional[int]:
    """The classes a detector's box head or a segmentor's decode head predicts."""
    roi_head = getattr(model, 'roi_head', None)
    head = roi_head.bbox_head if roi_head is not None else getattr(model, 'decode_head', None)
    return getattr(head, 'num_classes', None)


class _HiddenStates(nn.Module):
    """transformers' SwiftFormerModel returning the four stage outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        hs = self.model(x, output_hidden_states=True).hidden_states
        return hs[1], hs[3], hs[5], hs[7]


def _mmpretrain_backbone(name: str) -> nn.Module:
    """EfficientFormer / PoolFormer, mmpretrain's own code.

    ``import mmpretrain`` imports every model it has, and two of those fail
    here: its data code needs torchvision (which does not import beside
    this torch build) and its BLIP code subclasses a name transformers 5
    removed. The two backbones need neither, so their files are loaded
    under their own module names with the package ``__init__`` files
    skipped; their code runs unchanged.
    """
    import importlib.util
    import sys
    import types
    if 'mmpretrain.models.backbones.efficientformer' not in sys.modules:
        # an earlier failed ``import mmpretrain`` (mmdet tries one) leaves
        # half-initialised submodules behind
        for mod in [m for m in sys.modules if m.split('.')[0] == 'mmpretrain']:
            del sys.modules[mod]
        spec = importlib.util.find_spec('mmpretrain')
        if spec is None:
            raise ImportError(f'{name} needs mmpretrain (pip install mmpretrain)')
        root = os.path.dirname(spec.origin)
        for pkg in ('mmpretrain', 'mmpretrain.models', 'mmpretrain.models.backbones',
                    'mmpretrain.models.utils'):
            if pkg not in sys.modules:
                module = types.ModuleType(pkg)
                module.__path__ = [os.path.join(root, *pkg.split('.')[1:])]
                sys.modules[pkg] = module
        for mod in ('registry', 'models.utils.layer_scale', 'models.backbones.base_backbone',
                    'models.backbones.poolformer', 'models.backbones.efficientformer'):
            module = importlib.import_module(f'mmpretrain.{mod}')
            if mod == 'models.utils.layer_scale':
                sys.modules['mmpretrain.models.utils'].LayerScale = module.LayerScale
    cls, kwargs = PEERS_MMPRETRAIN[name]
    # the class itself: the registry would import mmpretrain.models after all
    module = sys.modules[f'mmpretrain.models.backbones.{cls.lower()}']
    return getattr(module, cls)(**kwargs)


def _backbone(name: str) -> nn.Module:
    if name in SWIFT:  # the same random weights as ref-<arch>: ratios compare equal math
        return _swiftformer_like_reference(name)
    if name.startswith('ref-') and name[4:] in SWIFT:
        return _HiddenStates(random_reference(name[4:]))
    if name in ('resnet18', 'resnet50'):
        from mmdet.models.backbones import ResNet
        return ResNet(depth=int(name[6:]), out_indices=(0, 1, 2, 3))
    if name in PEERS_MMPRETRAIN:
        return _mmpretrain_backbone(name)
    if name.startswith('timm-') and name[5:] in SWIFT:  # timm's SwiftFormer, features only
        import timm
        return _Features(timm.create_model(f'swiftformer_{name[5:]}', num_classes=0))
    if name in ('tv-resnet18', 'tv-resnet50'):
        import torchvision
        return _Features(getattr(torchvision.models, name[3:])())
    raise ValueError(f'unknown model {name!r}')


class _Features(nn.Module):
    """A classifier without its head: timm's ``forward_features``, or a
    torchvision ResNet's four stages."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        if hasattr(self.model, 'forward_features'):
            return (self.model.forward_features(x), )
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        outs = []
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            x = layer(x)
            outs.append(x)
        return tuple(outs)


def build_entry(entry: Entry, hw: Tuple[int, int], batch: int, device: str,
                train_step: bool = False, compile: bool = False) -> Built:
    """The module and a zero-argument call that runs one timed inference, or
    with ``train_step`` one training iteration: forward, backward and an
    optimizer step for whole models; forward and backward of the summed
    outputs' means for backbones.

    Whole models also get ``parts``: calls of the backbone alone and of the
    backbone and neck, timed in the same rounds, so the split backbone /
    neck / heads comes from one run.
    """
    name = entry.model
    # the same input for every entry, so outputs can be compared
    x = torch.randn(batch, 3, *hw, generator=torch.Generator().manual_seed(0)).to(device)
    whole = name in WHOLE_MODELS or name.endswith('.py')
    if whole:
        module, sample = _whole_model(WHOLE_MODELS.get(name, entry.spec.split(':')[0]), hw)
    else:
        module = _backbone(name)
    module.to(device)
    module.eval()  # not chained: some OpenMMLab train() overrides return None
    if entry.deploy:
        target = module if hasattr(module, 'switch_to_deploy') else getattr(module, 'backbone', None)
        if not hasattr(target, 'switch_to_deploy'):
            raise ValueError(f'{entry.spec}: only SwiftFormer has a deploy form')
        target.switch_to_deploy()
    if entry.channels_last:
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = sum(p.numel() for p in module.parameters())
    if compile and whole:
        module.backbone = torch.compile(module.backbone)
    elif compile:
        module = torch.compile(module)
    amp_dtype = torch.bfloat16 if device == 'cpu' else torch.float16
    amp = entry.precision == 'amp'

    def autocast():
        return torch.autocast(device, dtype=amp_dtype, enabled=amp)

    parts: Dict[str, Callable[[], object]] = {}
    if train_step and entry.deploy:
        raise ValueError(f'{entry.spec}: the deploy form is for inference, not --train-step')
    if train_step and whole:
        from mmengine.config import Config
        from mmengine.optim import build_optim_wrapper
        config = WHOLE_MODELS.get(name, entry.spec.split(':')[0])
        cfg = Config.fromfile(_config_path(config[0] if isinstance(config, tuple) else config))
        optim_cfg = dict(cfg.optim_wrapper)
        if amp:
            optim_cfg.update(type='AmpOptimWrapper', dtype='bfloat16' if device == 'cpu' else None)
        module.train()
        optim = build_optim_wrapper(module, optim_cfg)
        data = synthetic_train_batch(sample, hw, batch, _num_classes(module))

        def call():
            return module.train_step(data, optim)
    elif train_step:
        module.train()

        def call():
            with autocast():
                loss = sum(o.float().mean() for o in module(x))
            loss.backward()
            return loss
    elif whole:
        def call():
            with torch.no_grad(), autocast():
                return module.predict(x, [sample] * batch)

        def backbone():
            with torch.no_grad(), autocast():
                return module.backbone(x)

        def backbone_neck():
            with torch.no_grad(), autocast():
                return module.extract_feat(x)
        parts = {'backbone': backbone, 'backbone+neck': backbone_neck}
    else:
        def call():
            with torch.no_grad(), autocast():
                return module(x)
    return Built(entry, module, call, params, dict(input=x), parts)


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


def set_tf32(mode: str = 'default') -> Dict[str, bool]:
    """TF32 for CUDA matmuls and cuDNN convolutions: ``on``, ``off``, or
    ``default`` (left as it is: PyTorch's default is on for convolutions,
    off for matmuls). Returns the state, as :func:`compare` records it."""
    if mode not in ('default', 'on', 'off'):
        raise ValueError(f'tf32 must be default, on or off, not {mode!r}')
    if mode != 'default':
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == 'on'
    return dict(matmul=torch.backends.cuda.matmul.allow_tf32, cudnn=torch.backends.cudnn.allow_tf32)


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_call(call: Callable, device: str) -> float:
    """Wall time of one ``call()``. Not ``torch.utils.benchmark.Timer``: its
    ``timeit(1)`` runs the statement three times (two warm-up calls before
    each timed one, measured: 3 calls), so each timed run would follow two
    runs of the same entry instead of the other entries' (the interleaved
    protocol behind ``times_s``), at three times the cost; it also turns the
    garbage collector off and sets torch to 1 thread unless told otherwise;
    and ``blocked_autorange`` times blocks of adaptive size, not single runs."""
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
            train_step: bool = False, keep_going: bool = False) -> Dict[str, object]:
    """Time ``specs`` interleaved; ratios are to the first entry's median.

    Every row keeps its per-run times (``times_s``, in run order). With
    ``keep_going`` an entry that fails to build or in its warm-up is left
    out and its error recorded (``errors``) instead of ending the run."""
    entries = [Entry.parse(s) for s in specs]
    built: List[Built] = []
    errors: Dict[str, str] = {}
    for e in entries:
        try:
            b = build_entry(e, hw, batch, device, train_step, compile)
        except ImportError as err:
            log(f'skipped {e.spec}: {err}')
            continue
        except Exception as err:
            if not keep_going:
                raise
            errors[e.spec] = f'{type(err).__name__}: {err}'
            log(f'failed {e.spec}: {errors[e.spec]}')
            continue
        built.append(b)
    if not built:
        raise RuntimeError('no entry could be built' + (f': {errors}' if errors else ''))
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
    for b in list(built):  # warm-up, and peak memory of one call
        try:
            for _ in range(warmup):
                b.call()
                for part in b.parts.values():
                    part()
        except Exception as err:
            if not keep_going:
                raise
            errors[b.entry.spec] = f'{type(err).__name__}: {err}'
            log(f'failed {b.entry.spec}: {errors[b.entry.spec]}')
            built.remove(b)
            continue
        gc.collect()
        if device == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            b.call()
            memory[b.entry.spec] = torch.cuda.max_memory_allocated()
        else:
            with _PeakRSS() as peak:
                b.call()
            memory[b.entry.spec] = peak.peak - peak.base
    if not built:
        raise RuntimeError(f'every entry failed: {errors}')
    times: Dict[str, List[float]] = {b.entry.spec: [] for b in built}
    part_times: Dict[str, Dict[str, List[float]]] = {
        b.entry.spec: {k: [] for k in b.parts} for b in built}
    for r in range(runs):
        for b in built:
            times[b.entry.spec].append(time_call(b.call, device))
            for k, part in b.parts.items():
                part_times[b.entry.spec][k].append(time_call(part, device))
        log(f'round {r + 1}/{runs} done')
    base = built[0].entry.spec
    base_median = statistics.median(times[base])
    rows = []
    for b in built:
        s = summarize(times[b.entry.spec])
        row = dict(entry=b.entry.spec, model=b.entry.model, form=b.entry.form,
                   precision=b.entry.precision, params_m=b.params / 1e6, **s,
                   times_s=times[b.entry.spec], ratio=s['median_s'] / base_median,
                   throughput_img_s=batch / s['median_s'],
                   peak_mem_mb=memory[b.entry.spec] / 2**20)
        if b.entry.spec in checks:
            row['max_rel_diff_vs_reference'] = checks[b.entry.spec]
        if b.parts:  # medians of the same rounds: backbone, then what each stage adds
            pm = {k: statistics.median(v) for k, v in part_times[b.entry.spec].items()}
            row['split_s'] = dict(backbone=pm['backbone'],
                                  neck=pm['backbone+neck'] - pm['backbone'],
                                  heads=s['median_s'] - pm['backbone+neck'])
            row['part_times_s'] = part_times[b.entry.spec]
        if flops and not train_step:
            row.update(flops_and_params(b.module, b.extra['input']))
        rows.append(row)
    return dict(machine=machine_description(), device=device, input_hw=list(hw),
                batch=batch, warmup=warmup, runs=runs, compile=compile, baseline=base,
                measured='train_step' if train_step else 'inference',
                interleaved=True, torch=torch.__version__,
                tf32=dict(matmul=torch.backends.cuda.matmul.allow_tf32,
                          cudnn=torch.backends.cudnn.allow_tf32),
                cudnn_benchmark=torch.backends.cudnn.benchmark,
                timing=('wall clock (time.perf_counter) of one call, with torch.cuda.synchronize() '
                        'before and after it on CUDA; entries round robin, one call each per round'),
                errors=errors, results=rows)


def format_table(report: Dict[str, object]) -> str:
    width = max([24] + [len(r['entry']) + 2 for r in report['results']])
    head = (f'{"entry":<{width}}{"params(M)":>10}{"median(s)":>11}{"p90(s)":>9}'
            f'{"img/s":>8}{"mem(MB)":>9}{"ratio":>8}')
    lines = [f'# {report.get("measured", "inference")}; {report["machine"]}; device {report["device"]}; input '
             f'{report["input_hw"][0]}x{report["input_hw"][1]}, batch {report["batch"]}; '
             f'median of {report["runs"]} interleaved runs after {report["warmup"]} warm-up',
             head, '-' * len(head)]
    for r in report['results']:
        lines.append(f'{r["entry"]:<{width}}{r["params_m"]:>10.2f}{r["median_s"]:>11.4f}'
                     f'{r["p90_s"]:>9.4f}{r["throughput_img_s"]:>8.2f}{r["peak_mem_mb"]:>9.0f}'
                     f'{r["ratio"]:>7.2f}x')
        if r.get('flops_g') is not None:
            lines[-1] += f'  {r["flops_g"]:.1f} GFLOPs'
        if 'split_s' in r:
            lines[-1] += '  (' + ', '.join(f'{k} {v:.3f}s' for k, v in r['split_s'].items()) + ')'
    lines.append(f'ratios: median time / median of {report["baseline"]}')
    for spec, err in (report.get('errors') or {}).items():
        lines.append(f'failed {spec}: {err}')
    return '\n'.join(lines)
