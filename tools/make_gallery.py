"""The README's gallery: stage-one features of real photographs.

    python tools/make_gallery.py --det-checkpoint work_dirs/demo-det/epoch_6.pth \
        --seg-checkpoint work_dirs/demo-seg/iter_800.pth --out docs/figures/gallery_stage1.png

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

    from mmswift.visualization import build_feature_extractor, draw_stage, read_rgb
    from mmswift.visualization.features import _titled
    data_dir = osp.join(osp.dirname(skimage.__file__), 'data')
    columns = [('random', build_feature_extractor(DET_CFG)),
               ('demo Mask R-CNN', build_feature_extractor(DET_CFG, checkpoint=args.det_checkpoint)),
               ('demo Sem. FPN', build_feature_extractor(SEG_CFG, checkpoint=args.seg_checkpoint))]
    rows = []
    for name in PHOTOS:
        rgb = read_rgb(osp.join(data_dir, name))
        panels = [_titled(rgb, osp.splitext(name)[0], args.height)]
        for title, extractor in columns:
            feats, _ = extractor(rgb)
            panels.append(_titled(draw_stage(rgb, feats[0], 'mean'), title,
                                  args.height))
        rows.append(np.concatenate(panels, 1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    from PIL import Image  # a 256-colour palette keeps the committed PNG small
    Image.fromarray(np.concatenate(rows, 0)).quantize(256).save(args.out, optimize=True)
    print(f'gallery written to {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
