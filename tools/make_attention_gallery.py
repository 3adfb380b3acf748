"""The README's attention gallery: where each stage's additive attention
looks, on scikit-image's sample photos and the demo images.

    python tools/make_attention_gallery.py \\
        [--column 'demo Sem. FPN=configs/seg/fpn_swiftformer-xs_demo-scenes.py:CKPT' ...] \\
        --out docs/figures/gallery_attention.jpg

Rows are images; for each column (a model: random weights by default, plus
any ``--column TITLE=CONFIG[:CHECKPOINT]``) the magnitude of the token
weights of stages 1-4 (``tools/visualize_features.py --show attention``'s
panels), each through that model's own test preprocessing.
"""
import argparse
import os.path as osp
import numpy as np

PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png')
DEMO_IMAGES = ('data/demo_shapes/val/000000.png', 'data/demo_scenes/images/validation/000000.jpg')
DET_CFG = 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--column', action='append', default=[],
                   help="TITLE=CONFIG[:CHECKPOINT], a trained model's column")
    p.add_argument('--images', nargs='+', help='default: three scikit-image photos and the '
                   'first val image of each demo set (where generated)')
    p.add_argument('--out', default='docs/figures/gallery_attention.jpg')
    p.add_argument('--height', type=int, default=96, help='panel height in pixels')
    p.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    args = p.parse_args(argv)
    import cv2
    import torch

    from mmswift.visualization import (build_feature_extractor, draw_attention, grid_row,
                                       read_rgb, titled)
    if args.images:
        paths = args.images
    else:
        import skimage
        data_dir = osp.join(osp.dirname(skimage.__file__), 'data')
        paths = [osp.join(data_dir, n) for n in PHOTOS] + [p for p in DEMO_IMAGES if osp.isfile(p)]
    torch.manual_seed(args.seed)
    columns = [('random', build_feature_extractor(DET_CFG))]
    for spec in args.column:
        title, model = spec.split('=', 1)
        config, _, ckpt = model.partition(':')
        columns.append((title, build_feature_extractor(config, checkpoint=ckpt or None)))
    images = [read_rgb(path) for path in paths]
    width = max(int(round(args.height * rgb.shape[1] / rgb.shape[0])) for rgb in images)
    width = min(width, int(args.height * 1.5))
    grid = []
    for path, rgb in zip(paths, images):
        name = osp.splitext(osp.basename(path))[0]
        if 'demo_' in path:
            name = 'demo ' + ('shapes' if 'shapes' in path else 'scenes')
        panels = [titled(rgb, name, args.height, width)]
        for title, extractor in columns:
            for m in extractor.attention(rgb):
                panels.append(titled(draw_attention(rgb, m.weights), f'{title} s{m.stage + 1}',
                                     args.height, width))
        grid.append(grid_row(panels))
    fig = np.concatenate(grid, 0)
    if args.out.lower().endswith(('.jpg', '.jpeg')):
        cv2.imwrite(args.out, fig[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80])
    else:
        from PIL import Image
        Image.fromarray(fig).quantize(256).save(args.out, optimize=True)
    print(f'gallery written to {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
