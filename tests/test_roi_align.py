"""mmswift's CPU RoIAlign against mmcv's compiled op, and the det configs' use of it."""
from unittest import mock

import pytest
import torch
from mmcv.ops import RoIAlign as MMCVRoIAlign
from mmengine.config import Config

import mmswift.models.roi_extractor as roi_extractor
from mmswift.models.roi_extractor import RoIAlign


def make_case(channels_last: bool, seed: int = 0):
    """Two odd-sized feature maps at stride 4 and RoIs of every kind: small,
    large (up to a 30x30 sampling grid per bin), partly and wholly outside the
    image, and empty."""
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(2, 16, 37, 53, generator=g)
    if channels_last:
        feat = feat.contiguous(memory_format=torch.channels_last)
    h, w = 37 * 4, 53 * 4
    n = 60
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) ** 2 * torch.tensor([w, h])
    boxes = torch.cat([xy - 0.3 * wh, xy + 0.7 * wh], 1)  # some cross the image border
    special = torch.tensor([
        [-60., -50., -20., -10.],    # wholly outside, above-left
        [w + 10., 5., w + 40., 30.],  # wholly outside, right
        [10., 10., 10., 10.],          # empty
        [12., 30., 12.5, 31.],         # under one pixel
        [0., 0., w, h],                # the whole image
        [-5., -5., w + 9., h + 9.],    # beyond every border
    ])
    boxes = torch.cat([boxes, special])
    batch = torch.randint(0, 2, (boxes.shape[0], 1), generator=g).float()
    return feat, torch.cat([batch, boxes], 1)


@pytest.mark.parametrize('output_size', [7, 14])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('channels_last', [False, True])
def test_roi_align_equals_mmcv(output_size, sampling_ratio, aligned, channels_last):
    feat, rois = make_case(channels_last)
    args = dict(output_size=output_size, spatial_scale=0.25, sampling_ratio=sampling_ratio,
                aligned=aligned)
    ours, theirs = RoIAlign(**args), MMCVRoIAlign(**args)
    x1 = feat.clone().requires_grad_(True)
    x2 = feat.contiguous().requires_grad_(True)
    out, ref = ours(x1, rois), theirs(x2, rois)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # the RoIs wholly outside the image give zeros, as in mmcv
    assert ref[-6:-4].abs().max() == 0 and out[-6:-4].abs().max() == 0
    # the gradient reaches the feature map as mmcv's backward spreads it
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)


def test_roi_align_in_small_calls_is_the_same():
    """RoIs with large sampling grids are split into calls of bounded size."""
    feat, rois = make_case(channels_last=False, seed=3)
    layer = RoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=0)
    whole = layer(feat, rois)
    with mock.patch.object(roi_extractor, 'MAX_TAPS_PER_CALL', 2000):
        split = layer(feat, rois)
    torch.testing.assert_close(split, whole, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(split, MMCVRoIAlign(7, 0.25, 0)(feat, rois), rtol=1e-5, atol=1e-5)


def test_roi_align_leaves_max_pooling_to_mmcv():
    feat, rois = make_case(channels_last=False)
    args = dict(output_size=7, spatial_scale=0.25, sampling_ratio=2, pool_mode='max')
    with mock.patch.object(roi_extractor, 'roi_align_rows', side_effect=AssertionError):
        out = RoIAlign(**args)(feat, rois)
    torch.testing.assert_close(out, MMCVRoIAlign(**args)(feat, rois))


@pytest.mark.parametrize('config', ['configs/det/mask-rcnn_swiftformer-l3_fpn_1x_coco.py',
                                    'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'])
def test_det_configs_extract_rois_with_mmswift_roi_align(config):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    for extractor in (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor):
        assert len(extractor.roi_layers) == 4
        assert all(type(layer) is RoIAlign for layer in extractor.roi_layers)
    # the demo config's fixed sampling ratio and the strides reach the layers
    layer = model.roi_head.bbox_roi_extractor.roi_layers[0]
    assert layer.spatial_scale == 0.25
    assert layer.sampling_ratio == (1 if 'demo' in config else 0)


def test_roi_align_gives_the_boxes_no_gradient_as_mmcv():
    """mmcv's op does not differentiate in the boxes; a head trained on CPU
    must not learn through them where it would not on a GPU."""
    feat, rois = make_case(channels_last=False)
    for op in (RoIAlign(7, 0.25, 0), MMCVRoIAlign(7, 0.25, 0)):
        boxes = rois.clone().requires_grad_(True)
        out = op(feat.clone().requires_grad_(True), boxes)
        out.sum().backward()
        assert boxes.grad is None


def test_roi_align_refuses_negative_sizes_when_aligned_as_mmcv():
    feat, _ = make_case(channels_last=False)
    rois = torch.tensor([[0., 10., 10., 30., 30.], [1., 30., 30., 10., 12.]])
    with pytest.raises(RuntimeError, match='cannot have non-negative size'):
        MMCVRoIAlign(7, 0.25, 0, aligned=True)(feat, rois)
    with pytest.raises(ValueError, match=r'RoI 1 \[30.0, 30.0, 10.0, 12.0\] has a negative'):
        RoIAlign(7, 0.25, 0, aligned=True)(feat, rois)
    # not aligned, both clamp such a box to one pixel
    torch.testing.assert_close(RoIAlign(7, 0.25, 0, aligned=False)(feat, rois),
                               MMCVRoIAlign(7, 0.25, 0, aligned=False)(feat, rois),
                               rtol=1e-5, atol=1e-5)


def test_channels_last_features_never_reach_mmcvs_roi_align():
    """The det configs emit NCHW features, which mmdet's stock RoI extractor
    reads correctly; asking for channels_last features with it is refused
    when the model is built by the tools and inferencers."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from mmswift.errors import ConfigError
    from mmswift.models.kernels import check_feature_consumers
    cfg = Config.fromfile('configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py')
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    assert not cfg.model.backbone.get('out_channels_last', False)
    stock = dict(type='SingleRoIExtractor')  # mmdet's, as Cascade/HTC configs have it
    cfg.model.roi_head.bbox_roi_extractor.type = stock['type']
    cfg.model.roi_head.mask_roi_extractor.type = stock['type']
    model = MODELS.build(cfg.model)
    check_feature_consumers(model)  # NCHW features: fine
    model.backbone.out_channels_last = True
    with pytest.raises(ConfigError, match=r'backbone has out_channels_last=True but '
                       r'roi_head.bbox_roi_extractor.roi_layers.0 \(mmcv.ops.roi_align.RoIAlign\)'):
        check_feature_consumers(model)
    # mmswift's extractor reads any layout
    cfg = Config.fromfile('configs/det/mask-rcnn_swiftformer-xs_fpn_1x_coco.py')
    cfg.model.backbone.update(init_cfg=None, out_channels_last=True)
    check_feature_consumers(MODELS.build(cfg.model))
