"""tools/visualize_features.py, the energy-in-mask ratio, the training hook."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from mmswift.visualization import energy_in_mask_ratio

from .conftest import run_py, REPO, load_tool

vis_tool = load_tool('visualize_features')


@pytest.fixture
def images(tmp_path):
    """A colour photo-like image, a grayscale and an RGBA one, of odd sizes."""
    rng = np.random.default_rng(0)
    d = tmp_path / 'imgs'
    d.mkdir()
    yy, xx = np.mgrid[0:90, 0:130]
    img = np.zeros((90, 130, 3), np.uint8) + 40
    img[(yy - 45) ** 2 + (xx - 60) ** 2 < 400] = (230, 60, 30)  # a disc to localize
    img = np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(d / 'colour.png'), img)
    cv2.imwrite(str(d / 'gray.png'), img[..., 0])
    rgba = np.concatenate([img, np.full((90, 130, 1), 200, np.uint8)], 2)
    cv2.imwrite(str(d / 'rgba.png'), rgba)
    return d


@pytest.mark.parametrize('reduction', ['mean', 'max', 'pca'])
@pytest.mark.parametrize('stages', [[1], [1, 2, 3, 4]])
def test_figure_size_per_reduction_and_stage_set(images, tmp_path, reduction, stages):
    out = tmp_path / 'out'
    rc = vis_tool.main([str(images / 'colour.png'), 'xs', '--stages',
                        *map(str, stages), '--reduction', reduction, '--out-dir', str(out)])
    assert rc == 0
    fig = cv2.imread(str(out / f'colour_{reduction}.png'))
    # title bar + image height; input plus one panel per stage, 6 px apart
    assert fig.shape[:2] == (28 + 90, 130 + len(stages) * (6 + 130))
    panel = fig[28:, 136:266].astype(float)
    assert panel.std() > 5  # the heatmap is not constant
    assert not np.array_equal(panel, fig[28:, :130])


def test_topk_grid_and_greyscale_rgba_inputs(images, tmp_path):
    out = tmp_path / 'out'
    rc = vis_tool.main([str(images), 'xs', '--reduction', 'topk', '--topk', '4',
                        '--out-dir', str(out)])
    assert rc == 0
    for stem in ('colour', 'gray', 'rgba'):
        fig = cv2.imread(str(out / f'{stem}_topk.png'))
        assert fig is not None and fig.shape[0] == 28 + 90
        assert fig.shape[1] > 130 + 6  # input plus a 2x2 grid panel


def test_energy_ratio_is_one_for_uniform_and_high_inside_mask():
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True  # a quarter of the image
    uniform = torch.ones(8, 16, 16) * 3.0
    for centred in (True, False):
        assert energy_in_mask_ratio(uniform, mask, centred) == pytest.approx(1.0, abs=1e-6)
    noise = torch.randn(64, 16, 16, generator=torch.Generator().manual_seed(0))
    assert energy_in_mask_ratio(noise, mask) == pytest.approx(1.0, abs=0.1)
    inside = torch.zeros(8, 16, 16)
    inside[:, 5:11, 5:11] = 2.0  # within the mask even after bilinear upsampling
    inside[:, 5:11, 5:11:2] = -2.0  # zero mean: centring changes nothing
    for centred in (True, False):  # all energy on a quarter of the image
        assert energy_in_mask_ratio(inside, mask, centred) == pytest.approx(4.0, rel=1e-6)
    silent = torch.ones(8, 16, 16)  # active everywhere except on the object
    silent[:, 5:11, 5:11] = 0.0
    assert energy_in_mask_ratio(silent, mask, centred=False) < 0.9
    # centred energy is the deviation from the image's typical value, of
    # either sign: a map dark exactly on the object still outlines it
    assert energy_in_mask_ratio(silent, mask) > 2.0


def test_centred_ratio_ignores_constant_channel_offsets():
    """A per-channel constant says nothing about where objects are: it leaves
    the centred ratio as it is and drags the raw one towards 1."""
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    feat = torch.zeros(8, 16, 16)
    feat[:, 5:11, 5:11] = torch.randn(8, 6, 6, generator=torch.Generator().manual_seed(1))
    offset = feat + torch.linspace(3, 10, 8)[:, None, None]
    assert energy_in_mask_ratio(offset, mask) == pytest.approx(
        energy_in_mask_ratio(feat, mask), rel=1e-5)
    assert energy_in_mask_ratio(feat, mask, centred=False) > 3.0
    assert energy_in_mask_ratio(offset, mask, centred=False) < 1.3


def test_bad_inputs_give_one_line_errors_and_the_rest_are_drawn(images, tmp_path, capsys):
    (images / 'corrupt.png').write_bytes(b'\x89PNG not really')
    out = tmp_path / 'out'
    rc = vis_tool.main([str(images), 'xs', '--out-dir', str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith('error:')]
    assert lines == [f'error: {images / "corrupt.png"}: not a readable image']
    assert sorted(os.listdir(out)) == ['colour_mean.png', 'gray_mean.png', 'rgba_mean.png']

    rc = vis_tool.main([str(images / 'missing.jpg'), 'xs', '--out-dir', str(out)])
    assert rc == 1
    assert 'missing.jpg: no such file' in capsys.readouterr().err

    empty = tmp_path / 'empty'
    empty.mkdir()
    rc = vis_tool.main([str(empty), 'xs', '--out-dir', str(out)])
    assert rc == 2
    assert f'error: {empty}: folder holds no images' in capsys.readouterr().err


def test_config_mode_after_neck_and_mask_ratios(tmp_path, capsys):
    from mmswift.datasets.shapes_coco import generate_shapes_coco
    ann = generate_shapes_coco(str(tmp_path / 'shapes'), num_train=1, num_val=3, size=96)['val']
    cfg = os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py')
    out = tmp_path / 'out'
    rc = vis_tool.main([str(tmp_path / 'shapes' / 'val'), cfg, '--after-neck',
                        '--stages', '1', '2', '--masks', ann, '--out-dir', str(out)])
    assert rc == 0
    fig = cv2.imread(str(out / '000000_mean.png'))
    assert fig.shape[:2] == (28 + 96, 96 + 2 * (6 + 96))
    text = capsys.readouterr().out
    assert 'energy-in-mask ratio' in text and 'stage1:' in text
    report = json.load(open(out / 'energy_in_mask.json'))
    assert report['stages']['stage1']['images'] == 3
    ratio = report['stages']['stage1']['energy_in_mask_ratio']
    # masks on the left and on the right half of every image: the two shares
    # of energy add up to 1, on halves of the area, so the ratios add up to 2
    halves = {}
    for side, (x0, x1) in (('left', (0, 48)), ('right', (48, 96))):
        coco = json.load(open(ann))
        coco['annotations'] = [dict(a, segmentation=[[x0, 0, x1, 0, x1, 96, x0, 96]],
                                    area=48 * 96, bbox=[x0, 0, 48, 96])
                               for a in coco['annotations']]
        json.dump(coco, open(tmp_path / f'{side}.json', 'w'))
        assert vis_tool.main([str(tmp_path / 'shapes' / 'val'), cfg, '--after-neck',
                              '--stages', '1', '--masks', str(tmp_path / f'{side}.json'),
                              '--out-dir', str(tmp_path / side)]) == 0
        report = json.load(open(tmp_path / side / 'energy_in_mask.json'))
        halves[side] = report['stages']['stage1']['energy_in_mask_ratio']
    assert halves['left'] + halves['right'] == pytest.approx(2.0, abs=1e-3)
    assert ratio != pytest.approx(halves['left'], abs=1e-3)


@pytest.mark.slow
def test_deploy_form_by_default_with_the_same_features(tmp_path):
    """The tool runs the deploy form (and logs it); --no-deploy gives the
    training form, and both measure the same energy-in-mask ratios."""
    from mmswift.apis import DEPLOY_MESSAGE
    from mmswift.datasets.shapes_coco import generate_shapes_coco
    ann = generate_shapes_coco(str(tmp_path / 'shapes'), num_train=1, num_val=2, size=64)['val']
    ratios = {}
    for flag in ([], ['--no-deploy']):
        out = tmp_path / f'out{len(flag)}'
        proc = run_py('tools/visualize_features.py', str(tmp_path / 'shapes' / 'val'), 'xs',
                      '--stages', '1', '2', '--masks', ann, '--no-draw', '--out-dir', str(out), *flag)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert (DEPLOY_MESSAGE in proc.stdout + proc.stderr) == (not flag)
        stages = json.load(open(out / 'energy_in_mask.json'))['stages']
        ratios[bool(flag)] = [stages[s]['energy_in_mask_ratio'] for s in ('stage1', 'stage2')]
    assert ratios[True] == pytest.approx(ratios[False], rel=1e-4)


def test_gallery_panels_share_one_width_and_fit_their_titles():
    from mmswift.visualization import titled
    tall, wide = np.zeros((200, 100, 3), np.uint8), np.zeros((100, 300, 3), np.uint8)
    panels = [titled(tall, 'demo Mask R-CNN', 120, 110), titled(wide, 'cat', 120, 110)]
    assert panels[0].shape == panels[1].shape == (28 + 120, 110, 3)
    for p in panels:  # each title's ink stays inside its panel, none is cut off
        bar = p[:28]
        assert (bar < 255).any() and (bar[:, -4:] == 255).all()
    # the image keeps its aspect inside the cell: white bands beside the tall one
    assert (panels[0][28:, :20] == 255).all() and (panels[0][28:, 55] == 0).all()
    assert (panels[1][28:40] == 255).all()


@pytest.mark.slow
def test_det_and_seg_extractors_share_one_process():
    """tools/make_gallery.py builds a detector and a segmentor in one process:
    each runs its own test pipeline, whichever was initialised last, and
    gives stage-one maps of the image's aspect."""
    from mmswift.visualization import build_feature_extractor
    det = build_feature_extractor(os.path.join(REPO, 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'))
    seg = build_feature_extractor(os.path.join(REPO, 'configs/seg/fpn_swiftformer-xs_demo-scenes.py'))
    rgb = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    outputs = [extractor(rgb) for extractor in (det, seg, det)]
    for feats, strides in outputs:
        assert strides == [4, 8, 16, 32]
        h, w = feats[0].shape[-2:]
        assert abs(h / w - 96 / 160) < 0.05, (h, w)
    assert torch.equal(outputs[0][0][0], outputs[2][0][0])
