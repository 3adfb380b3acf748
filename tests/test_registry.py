"""The backbone as mmdet and mmseg configs name it."""
import pytest
import torch
from mmengine.config import Config

from .conftest import run_py


def _inherit(tmp_path, base: str, body: str) -> Config:
    path = tmp_path / 'cfg.py'
    path.write_text(f"_base_ = {base!r}\n" + body)
    return Config.fromfile(str(path))


def test_builds_from_an_mmdet_mask_rcnn_config(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    cfg = _inherit(tmp_path, 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', (
        "custom_imports = dict(imports=['mmswift'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='mmswift.SwiftFormer', arch='xs'),\n"
        "             neck=dict(in_channels=[48, 56, 112, 220]))\n"))
    model = MODELS.build(cfg.model).eval()
    assert type(model.backbone).__module__ == 'mmswift.models.backbones.swiftformer'
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 128, 96))
    assert [f.shape[-2:] for f in feats[:4]] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    assert all(f.shape[1] == 256 for f in feats)


def test_builds_from_an_mmseg_fpn_config(tmp_path):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg = _inherit(tmp_path, 'mmseg::_base_/models/fpn_r50.py', (
        "custom_imports = dict(imports=['mmswift'], allow_failed_imports=False)\n"
        "model = dict(backbone=dict(_delete_=True, type='mmswift.SwiftFormer', arch='L1'),\n"
        "             neck=dict(in_channels=[48, 96, 192, 384]),\n"
        "             decode_head=dict(norm_cfg=dict(type='BN', requires_grad=True)))\n"))
    cfg.model.data_preprocessor = None
    cfg.model.pretrained = None  # the base's ResNet weights; our configs do the same
    model = MODELS.build(cfg.model).eval()
    assert model.backbone.__class__.__name__ == 'SwiftFormer'
    assert model.backbone.embed_dims == [48, 96, 192, 384]
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 96), mode='tensor')
    assert logits.shape == (1, 19, 16, 24)


@pytest.mark.slow
def test_backbone_imports_without_mmdet_mmseg_or_mmcv_ops():
    """The backbone needs torch, mmengine and mmcv's Python bricks (DropPath,
    build_norm_layer), but neither mmdet/mmseg nor mmcv's compiled ops: it
    builds and runs where mmcv's ops are not built (mmcv-lite, a fresh GPU
    machine)."""
    code = '''
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mmdet', 'mmseg') or name.startswith(('mmcv.ops', 'mmcv._ext')):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import torch, mmswift
from mmswift.models import SwiftFormer
from mmswift.models.pretrained import load_pretrained
outs = SwiftFormer('xs')(torch.randn(1, 3, 64, 64))
print(len(outs), sorted(m for m in sys.modules if m.split('.')[0] in ('mmdet', 'mmseg')
                         or m.startswith(('mmcv.ops', 'mmcv._ext'))))
'''
    proc = run_py('-c', code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '4 []'  # after the build's log line
