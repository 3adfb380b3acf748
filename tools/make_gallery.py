"""The README's gallery: stage-one features of real photographs.

    python tools/make_gallery.py --det-checkpoint work_dirs/demo-det/epoch_4.pth \
        --seg-checkpoint work_dirs/demo-seg/iter_450.pth --out docs/figures/gallery_stage1.png

Rows are scikit-image's sample photographs (shipped inside its wheel: the
astronaut, the cat, coffee cups, a rocket and a motorcycle); columns are the
photo and SwiftFormer-XS's stage-one (stride 4) mean-channel heatmap with
random weights, from the trained demo Mask R-CNN, and from the trained demo
Semantic FPN, each through that model's own test preprocessing.
"""
import argparse
import os.path as osp

import numpy as np

PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png')
DET_CFG = 'configs/det/mask-rcnn_swiftformer-xs_fpn_demo-shapes.py'
SEG_CFG = 'configs/seg/fpn_swiftformer-xs_demo-scenes.py'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--det-checkpoint', required=True)
    p.add_argument('--seg-checkpoint', required=True)
    p.add_argument('--out', default='docs/figures/gallery_stage1.png')
    p.add_argument('--height', type=int, default=120, help='row height in pixels')
    args = p.parse_args(argv)
    import skimage

    from mmswift.visualization import (build_feature_extractor, draw_stage, grid_row, read_rgb,
                                       titled)
    data_dir = osp.join(osp.dirname(skimage.__file__), 'data')
    columns = [('random', build_feature_extractor(DET_CFG)),
               ('demo Mask R-CNN', build_feature_extractor(DET_CFG, checkpoint=args.det_checkpoint)),
               ('demo Sem. FPN', build_feature_extractor(SEG_CFG, checkpoint=args.seg_checkpoint))]
    photos = [read_rgb(osp.join(data_dir, name)) for name in PHOTOS]
    # one column width for every row: the widest photo at the row height
    width = max(int(round(args.height * rgb.shape[1] / rgb.shape[0])) for rgb in photos)
    grid = []
    for name, rgb in zip(PHOTOS, photos):
        panels = [titled(rgb, osp.splitext(name)[0], args.height, width)]
        for title, extractor in columns:
            feats, _ = extractor(rgb)
            panels.append(titled(draw_stage(rgb, feats[0], 'mean'), title, args.height, width))
        grid.append(grid_row(panels))
    from PIL import Image  # a 256-colour palette keeps the committed PNG small
    Image.fromarray(np.concatenate(grid, 0)).quantize(256).save(args.out, optimize=True)
    print(f'gallery written to {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
