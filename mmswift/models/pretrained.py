"""Load SwiftFormer weights from every checkpoint layout people have.

Four layouts are recognised and renamed to mmswift's own (timm's names):

* ``official``: the SwiftFormer repository's ImageNet checkpoints
  (``{'model': ...}``, ``patch_embed.*``, ``network.N.*``, heads);
* ``timm``: timm's ``swiftformer_*`` state dicts (``stem.*``, ``stages.*``);
* ``huggingface``: transformers' ``SwiftFormerModel`` /
  ``SwiftFormerForImageClassification`` (``.bin``, ``.safetensors`` or a
  ``save_pretrained`` folder);
* ``mmswift``: checkpoints of mmswift detectors/segmentors (``backbone.*``
  inside mmengine's ``state_dict``) and plain converted backbones.

Classifier heads and anything outside the backbone are dropped, and what
was loaded, missing and dropped is logged.
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from ..errors import CheckpointError
from ..fileio import read_checkpoint

StateDict = Dict[str, torch.Tensor]

FORMATS = ('official', 'timm', 'huggingface', 'mmswift')


# ------------------------------------------------------------------ I/O
def extract_state_dict(ckpt: dict, path: str) -> StateDict:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'checkpoint {path} holds a {type(ckpt).__name__}, '
                              f'not a state dict')
    for key in ('state_dict', 'model', 'module'):
        if key in ckpt and isinstance(ckpt[key], dict):
            ckpt = ckpt[key]
            break
    sd = {}
    for k, v in ckpt.items():
        if isinstance(v, torch.Tensor):
            sd[k[len('module.'):] if k.startswith('module.') else k] = v
    return sd


# The attention form each layout was trained with, where the layout says it:
# transformers' port kept the pre-July-2023 softmax (see EfficientAdditiveAttention).
LAYOUT_ATTN_NORM = {'huggingface': 'softmax'}


def is_folded(keys) -> bool:
    """Whether an mmswift-keyed state dict is a deploy form: its blocks hold
    no layer scales (folded into the convolutions, like the BatchNorms)."""
    blocks = [k for k in keys if k.startswith('stages.') and '.blocks.' in k]
    return bool(blocks) and not any('layer_scale' in k for k in blocks)


def known_attn_norm(ckpt: dict, native: StateDict, fmt: str) -> Optional[Tuple[str, str]]:
    """``(form, where it is recorded)`` for a checkpoint whose attention form
    is known: its ``attn_norm_code`` buffers (mmswift), ``meta['attn_norm']``
    (tools/convert_checkpoint.py), or its layout; None when unknown."""
    codes = {int(v) for k, v in native.items() if k.endswith('attn.attn_norm_code')}
    if len(codes) == 1:
        from .layers import ATTN_NORMS
        return ATTN_NORMS[codes.pop()], 'its attn_norm_code buffers'
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and meta.get('attn_norm'):
        return meta['attn_norm'], "its meta['attn_norm']"
    if fmt in LAYOUT_ATTN_NORM:
        return LAYOUT_ATTN_NORM[fmt], f'its layout ({fmt})'
    return None


# ------------------------------------------------------------- renaming
def detect_format(sd: StateDict) -> Optional[str]:
    keys = list(sd)

    def any_starts(*prefixes: str) -> bool:
        return any(k.startswith(prefixes) for k in keys)

    if any_starts('backbone.'):
        return 'mmswift'
    if any_starts('swiftformer.', 'patch_embed.patch_embedding.', 'encoder.network.'):
        return 'huggingface'
    if any_starts('network.', 'patch_embed.'):
        return 'official'
    if any_starts('stem.', 'stages.'):
        return 'timm'
    return None


def _layer_scale(k: str) -> str:
    return re.sub(r'\.layer_scale(_[12])?$', r'.layer_scale\1.gamma', k)


def _from_official(k: str) -> Optional[str]:
    k = k.replace('patch_embed.', 'stem.', 1).replace('.Proj.', '.proj.')
    m = re.match(r'^network\.(\d+)\.(.*)$', k)
    if m:
        n, rest = int(m.group(1)), m.group(2)
        k = (f'stages.{n // 2}.blocks.{rest}' if n % 2 == 0 else
             f'stages.{n // 2 + 1}.downsample.{rest}')
    m = re.match(r'^norm(\d)\.(.*)$', k)  # fork_feat output norms 0/2/4/6
    if m:
        k = f'norm{int(m.group(1)) // 2}.{m.group(2)}'
    return _layer_scale(k)


def _from_huggingface(k: str) -> Optional[str]:
    if k.startswith('swiftformer.'):
        k = k[len('swiftformer.'):]
    k = k.replace('patch_embed.patch_embedding.', 'stem.', 1)
    k = k.replace('.depth_wise_conv.', '.dwconv.')
    k = k.replace('.point_wise_conv', '.pwconv')
    m = re.match(r'^encoder\.network\.(\d+)\.(.*)$', k)
    if m:
        n, rest = int(m.group(1)), m.group(2)
        k = (f'stages.{n // 2}.{rest}' if n % 2 == 0 else
             f'stages.{n // 2 + 1}.downsample.{rest}')
    return _layer_scale(k)


def _from_mmswift(k: str) -> Optional[str]:
    return k[len('backbone.'):] if k.startswith('backbone.') else None


_RENAMERS = {
    'official': _from_official,
    'timm': lambda k: k,
    'huggingface': _from_huggingface,
    'mmswift': _from_mmswift,
}


def convert_state_dict(sd: StateDict, fmt: Optional[str] = None
                       ) -> Tuple[StateDict, str, List[str]]:
    """Rename a SwiftFormer state dict to mmswift's keys.

    Returns the renamed dict, the detected format, and the keys that are not
    backbone weights (classifier heads, detector necks/heads), which are
    dropped.
    """
    fmt = fmt or detect_format(sd)
    if fmt is None:
        sample = ', '.join(list(sd)[:3]) or 'no tensors'
        raise CheckpointError(
            f'not a SwiftFormer checkpoint (keys: {sample}, ...); expected '
            f'one of the formats {FORMATS}')
    rename = _RENAMERS[fmt]
    out, dropped = {}, []
    for k, v in sd.items():
        new = rename(k)
        if new is None or not new.startswith(('stem.', 'stages.', 'norm')) \
                or re.match(r'^norm\.', new):
            dropped.append(k)
        else:
            out[new] = v
    return out, fmt, dropped


def to_official(sd: StateDict) -> Dict[str, StateDict]:
    """Write a :class:`~mmswift.models.SwiftFormerClassifier` state dict
    (``backbone.*``, ``head.*``, ``dist_head.*``) in the official release's
    layout, ``{'model': ...}`` with ``patch_embed.*``, ``network.N.*``,
    ``norm``, ``head``, ``dist_head``: the renaming of ``official`` read
    backwards, so that the result loads through every door the official
    ImageNet checkpoints load through."""
    out, forms = {}, set()
    for k, v in sd.items():
        if k.endswith('.attn_norm_code'):  # not in the official layout: recorded in meta
            forms.add(int(v))
            continue
        if k.startswith(('head.', 'dist_head.')):
            out[k] = v
            continue
        if not k.startswith('backbone.'):
            raise CheckpointError(f'to_official: {k} is not a classifier key (expected '
                                  f'backbone.*, head.* or dist_head.*)')
        k = k[len('backbone.'):]
        k = re.sub(r'\.(layer_scale(_[12])?)\.gamma$', r'.\1', k)
        k = k.replace('.attn.proj.', '.attn.Proj.')
        k = re.sub(r'^norm3\.', 'norm.', k)  # the classifier's norm on the last stage
        k = k.replace('stem.', 'patch_embed.', 1) if k.startswith('stem.') else k
        m = re.match(r'^stages\.(\d+)\.(blocks|downsample)\.(.*)$', k)
        if m:
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            k = f'network.{2 * i}.{rest}' if part == 'blocks' else f'network.{2 * i - 1}.{rest}'
        out[k] = v
    if len(forms) == 1:
        from .layers import ATTN_NORMS
        return {'model': out, 'meta': {'attn_norm': ATTN_NORMS[forms.pop()]}}
    return {'model': out}


def infer_arch(sd: StateDict) -> Tuple[List[int], List[int]]:
    """Read (layers, embed_dims) off an mmswift-keyed state dict."""
    layers, dims = [], []
    for i in range(4):
        blocks = {int(m.group(1)) for k in sd
                  for m in [re.match(rf'^stages\.{i}\.blocks\.(\d+)\.', k)] if m}
        layers.append(max(blocks) + 1 if blocks else 0)
        last = f'stages.{i}.blocks.{layers[-1] - 1}.local_representation.dwconv.weight'
        dims.append(int(sd[last].shape[0]) if last in sd else 0)
    return layers, dims


def variant_mismatch(sd: StateDict, layers: List[int], dims: List[int],
                     arch_settings: Dict[str, dict]) -> Optional[str]:
    """What in an mmswift-keyed state dict says it is not of the variant
    ``layers``/``embed_dims``, or None. Stages the state dict lacks are not
    held against it (partial checkpoints load non-strictly)."""
    ckpt_layers, ckpt_dims = infer_arch(sd)
    if any(d and d != m for d, m in zip(ckpt_dims, dims)) or \
            any(n and n != m for n, m in zip(ckpt_layers, layers)):
        return describe_arch(ckpt_layers, ckpt_dims, arch_settings)
    return None


def check_checkpoint_variant(path: str, arch: str, arch_settings: Dict[str, dict],
                             what: str = 'checkpoint') -> None:
    """Refuse a detector/segmentor checkpoint of another SwiftFormer variant
    than ``arch`` before mmengine loads it: mmengine loads whole-model
    checkpoints non-strictly, so an L1 checkpoint under an XS config would
    otherwise be evaluated with random layers. Reads the file once, with
    tensors memory-mapped."""
    sd = extract_state_dict(read_checkpoint(path, what=what, mmap=True), path)
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    if not backbone:
        raise CheckpointError(f'{what}: checkpoint {path} holds no backbone.* weights, '
                              f'so it is not a detector/segmentor checkpoint; ImageNet '
                              f'backbone weights go in model.backbone.init_cfg.checkpoint')
    want = arch_settings[arch]
    found = variant_mismatch(backbone, list(want['layers']), list(want['embed_dims']), arch_settings)
    if found:
        raise CheckpointError(
            f"{what}: checkpoint {path} holds a {found} backbone but the config builds "
            f"arch='{arch}'; use the config of that variant, or a checkpoint trained with this one")


def describe_arch(layers: List[int], dims: List[int],
                  arch_settings: Dict[str, dict]) -> str:
    """``SwiftFormer-L1`` for a known variant of ``arch_settings``."""
    for name, a in arch_settings.items():
        if a['layers'] == layers and a['embed_dims'] == dims:
            return f'SwiftFormer-{name.upper()}'
    return f'a SwiftFormer with layers={layers}, embed_dims={dims}'


# --------------------------------------------------------------- loading
def load_pretrained(model: nn.Module, path: str, prefix: Optional[str] = None,
                    map_location: str = 'cpu', logger: Optional[MMLogger] = None,
                    what: str = 'checkpoint') -> Dict[str, list]:
    """Load any supported checkpoint into a :class:`SwiftFormer`.

    ``prefix`` (as in mmengine's ``PretrainedInit``) keeps only the keys under
    it, e.g. ``'backbone.'``. ``what`` names where the path came from in
    errors (``model.backbone.init_cfg.checkpoint``). Raises :class:`CheckpointError` naming both
    variants when the checkpoint is of another SwiftFormer variant.
    """
    logger = logger or MMLogger.get_current_instance()
    ckpt = read_checkpoint(path, map_location, what=what)
    sd = extract_state_dict(ckpt, path)
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    native, fmt, dropped = convert_state_dict(sd)
    own = model.state_dict()
    if is_folded(native):
        raise CheckpointError(
            f'checkpoint {path} is a deploy-form (folded) state dict: its BatchNorms and layer '
            f'scales are folded into the convolutions, so it cannot initialise a trainable '
            f'backbone; use the checkpoint saved before switch_to_deploy()')

    mismatch = variant_mismatch(native, model.layers, model.embed_dims, model.arch_settings)
    mismatch = mismatch or next((k for k, v in native.items()
                                 if k in own and own[k].shape != v.shape), None)
    if mismatch:
        asked = (f"arch='{model.arch_name}'" if model.arch_name != 'custom' else
                 f'layers={model.layers}, embed_dims={model.embed_dims}')
        raise CheckpointError(
            f'checkpoint {path} holds {describe_arch(*infer_arch(native), model.arch_settings)} '
            f'but the backbone was built with {asked}; set the backbone arch to match '
            f'the checkpoint, or use a checkpoint of the asked variant')

    form = known_attn_norm(ckpt, native, fmt)
    if form and form[0] != model.attn_norm:
        raise CheckpointError(
            f"checkpoint {path} was trained with attn_norm='{form[0]}' ({form[1]}) but the "
            f"backbone is built with attn_norm='{model.attn_norm}'; set "
            f"model.backbone.attn_norm='{form[0]}'")

    unexpected = [k for k in native if k not in own]
    to_load = {k: v for k, v in native.items() if k in own}
    # the attention-form buffers of a checkpoint without them stay as built
    missing = [k for k in own if k not in to_load and not k.endswith('.attn_norm_code')]
    model.load_state_dict(to_load, strict=False)

    held = ('every backbone tensor it holds' if not unexpected else
            f'{len(to_load)} of the {len(native)} backbone tensors it holds')
    print_log(f'SwiftFormer: loaded {len(to_load)}/{len(own)} tensors from '
              f'{path} ({fmt} format), {held}', logger=logger)
    if missing and all(re.match(r'norm\d\.', k) for k in missing):
        # classification checkpoints end in one ``norm`` (dropped); the
        # per-stage output norms exist for dense prediction only
        print_log(f'SwiftFormer: the output norms {sorted({k.split(".")[0] for k in missing})} '
                  f'({len(missing)} tensors) are not in classification checkpoints; '
                  f'left as initialised', logger=logger)
    elif missing:
        print_log(f'SwiftFormer: missing in checkpoint, left as initialised: '
                  f'{missing}', logger=logger)
    if dropped or unexpected:
        print_log(f'SwiftFormer: dropped from checkpoint (not part of this '
                  f'backbone): {dropped + unexpected}', logger=logger)
    return dict(loaded=sorted(to_load), missing=missing,
                dropped=dropped + unexpected, format=fmt)
