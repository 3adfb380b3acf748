"""Draw (and measure) where SwiftFormer's features look.

    python tools/visualize_features.py INPUT [INPUT ...] CONFIG|ARCH [CHECKPOINT]

    # stage one (stride 4) of a trained Mask R-CNN, over each image
    python tools/visualize_features.py a.jpg b.jpg CONFIG CKPT
    # just a backbone (xs, s, l1, l3): all four stages, several reductions, a folder
    python tools/visualize_features.py images/ l1 swiftformer_l1.pth --stages 1 2 3 4 \
        --reduction mean pca
    python tools/visualize_features.py 'imgs/*.png' CONFIG --after-neck
    # the energy-in-mask ratio per stage against ground-truth masks
    python tools/visualize_features.py data/demo_shapes/val CONFIG CKPT \
        --masks data/demo_shapes/annotations/instances_val.json
    # where the additive attention's global query looks, all four stages
    python tools/visualize_features.py a.jpg CONFIG CKPT --show attention

Inputs are images, folders of images or glob patterns; then, as in mmdet's
tools, the config and the checkpoint (random weights without one). A bare
variant name instead of a config draws just the backbone, with ImageNet
normalisation; its checkpoint may be in any format the backbone loads.

Writes OUT_DIR/<image>_<reduction>.png: the input beside each chosen
stage's feature map drawn over it at the input's resolution. Grayscale and
RGBA images are converted to RGB (RGBA composited on white). A missing or
unreadable image gets a one-line error and the others are still drawn; the
exit status is then 1.

``--show attention`` draws, instead of the features, the magnitude of the
token weights with which each stage's additive attention (its last block)
pools the queries into its global query, all four stages by default:
OUT_DIR/<image>_attention.png; with ``--masks`` it prints (and writes to
attention_in_mask.json) the share of weight magnitude on the objects over
their share of the area. A backbone with ``attn_norm='softmax'`` has weights
that are all exactly 1: the tool says so in one line and draws nothing.
"""
import argparse
import json
import os
import os.path as osp
import sys

ARCHS = ('xs', 's', 'l1', 'l3')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Draw SwiftFormer feature maps over images')
    p.add_argument('positional', nargs='+', metavar='INPUT... CONFIG|ARCH [CHECKPOINT]',
                   help='images, folders or glob patterns; then a det/seg config (its test '
                   'preprocessing is used) or a backbone variant (xs, s, l1, l3); then '
                   'optionally a checkpoint')
    p.add_argument('--show', choices=['features', 'attention'], default='features',
                   help="what to draw: the stages' output features (default) or the "
                   "additive attention's token weights")
    p.add_argument('--stages', type=int, nargs='+', choices=[1, 2, 3, 4],
                   help='stages to draw, 1 = stride 4 (default: 1 for features, all four '
                   'for attention)')
    p.add_argument('--reduction', nargs='+', default=['mean'],
                   choices=['mean', 'max', 'topk', 'pca'], help='channel reduction(s)')
    p.add_argument('--topk', type=int, default=8, help='channels in the topk grid')
    p.add_argument('--after-neck', action='store_true', help='draw FPN outputs instead')
    p.add_argument('--alpha', type=float, default=0.5, help='heatmap opacity')
    p.add_argument('--fig-height', type=int, help='height of the written figure '
                   '(default: the image height, at most 1024)')
    p.add_argument('--masks', help='COCO instance json or label PNG(s): print the '
                   'energy-in-mask ratio per stage')
    p.add_argument('--out-dir', default='feature_maps', help='output folder')
    p.add_argument('--no-draw', action='store_true', help='only compute --masks ratios')
    from mmswift.engine.launch import add_device_argument
    add_device_argument(p)
    p.add_argument('--no-deploy', action='store_true',
                   help='run the training form of the backbone (default: its deploy form)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the random initialisation (when no checkpoint is given)')
    args = p.parse_args(argv)
    if args.stages is None:
        args.stages = [1] if args.show == 'features' else [1, 2, 3, 4]
    if args.show == 'attention' and args.after_neck:
        p.error('--after-neck draws FPN features; the attention is in the backbone')
    model_at = next((i for i, a in enumerate(args.positional)
                     if a.endswith('.py') or a.lower() in ARCHS), None)
    if model_at is None or model_at == 0 or len(args.positional) > model_at + 2:
        p.error('expected INPUT [INPUT ...] CONFIG|ARCH [CHECKPOINT]: images first, then a '
                f'config (.py) or a variant ({", ".join(ARCHS)}), then at most a checkpoint')
    args.inputs = args.positional[:model_at]
    model = args.positional[model_at]
    args.config, args.arch = (model, None) if model.endswith('.py') else (None, model.lower())
    args.checkpoint = args.positional[model_at + 1] if len(args.positional) > model_at + 1 else None
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import cv2
    from mmengine.utils import ProgressBar

    from mmswift.errors import MMSwiftError

    from mmswift.visualization import (ImageReadError, draw_figure, energy_in_mask_ratio,
                                       read_rgb)
    try:
        paths, extractor, masks = load_inputs(args)
    except (ImageReadError, MMSwiftError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if args.show == 'attention':
        return show_attention(args, paths, extractor, masks)
    stages = [s - 1 for s in sorted(set(args.stages))]
    os.makedirs(args.out_dir, exist_ok=True)
    ratios = {s: [] for s in range(4)}
    raw_ratios = {s: [] for s in range(4)}
    failed = 0
    bar = ProgressBar(len(paths), file=sys.stderr) if len(paths) > 1 else None
    for path in paths:
        try:
            rgb = read_rgb(path)
            feats, strides = extractor(rgb, after_neck=args.after_neck)
            if masks is not None:
                mask = masks(path, rgb.shape[:2])
                if mask is not None and 0 < mask.mean() < 1:
                    for s in range(min(4, len(feats))):
                        ratios[s].append(energy_in_mask_ratio(feats[s], mask))
                        raw_ratios[s].append(
                            energy_in_mask_ratio(feats[s], mask, centred=False))
            if not args.no_draw:
                stem = osp.splitext(osp.basename(path))[0]
                for red in args.reduction:
                    fig = draw_figure(rgb, feats, strides, stages, red, args.topk, args.alpha,
                                      args.after_neck, args.fig_height)
                    cv2.imwrite(osp.join(args.out_dir, f'{stem}_{red}.png'), fig[..., ::-1])
        except ImageReadError as e:
            failed += 1
            print(f'\nerror: {e}', file=sys.stderr)
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    if masks is not None:
        measured = {s: v for s, v in ratios.items() if v}
        if not measured:
            print(f'error: no image had a usable mask in {args.masks}', file=sys.stderr)
            return 2
        import numpy as np
        summary = {f'stage{s + 1}': dict(
            energy_in_mask_ratio=float(np.nanmean(v)),
            raw_energy_in_mask_ratio=float(np.nanmean(raw_ratios[s])),
            images=len(v)) for s, v in measured.items()}
        print('energy-in-mask ratio (1.0 = no localization), centred energy '
              '(raw energy, constant parts included, in brackets):')
        for name, row in summary.items():
            print(f'  {name}: {row["energy_in_mask_ratio"]:.3f}  '
                  f'({row["raw_energy_in_mask_ratio"]:.3f})  ({row["images"]} images)')
        with open(osp.join(args.out_dir, 'energy_in_mask.json'), 'w') as f:
            json.dump(dict(config=args.config, arch=args.arch, checkpoint=args.checkpoint,
                           after_neck=args.after_neck, masks=args.masks, stages=summary), f,
                      indent=2)
    if not args.no_draw:
        print(f'{len(paths) - failed} image(s) drawn to {args.out_dir}/')
    return 1 if failed else 0


def load_inputs(args):
    """The images, the model (with its test preprocessing) and the masks,
    shared by both views."""
    import torch

    from mmswift.visualization import ObjectMasks, build_feature_extractor, collect_images
    paths = [p for pattern in args.inputs for p in collect_images(pattern)]
    torch.manual_seed(args.seed)  # random weights are reproducible
    print(f'device: {args.device}')
    extractor = build_feature_extractor(args.config, args.arch, args.checkpoint, args.device,
                                        deploy=not args.no_deploy)
    return paths, extractor, ObjectMasks(args.masks) if args.masks else None


def show_attention(args, paths, extractor, masks) -> int:
    """``--show attention``: the same inputs, model and preprocessing as the
    features; per stage, the additive attention's token weights."""
    import cv2
    import numpy as np
    from mmengine.utils import ProgressBar

    from mmswift.visualization import (ImageReadError, attention_in_mask_ratio,
                                       draw_attention_figure, read_rgb)
    stages = [s - 1 for s in sorted(set(args.stages))]
    os.makedirs(args.out_dir, exist_ok=True)
    ratios = {s: [] for s in stages}
    failed, constant = 0, None
    bar = ProgressBar(len(paths), file=sys.stderr) if len(paths) > 1 else None
    for path in paths:
        try:
            rgb = read_rgb(path)
            maps = extractor.attention(rgb, stages)
            if maps[0].constant:  # the softmax form: nothing varies, nothing to draw
                constant = maps[0].message
                break
            if masks is not None:
                mask = masks(path, rgb.shape[:2])
                if mask is not None and 0 < mask.mean() < 1:
                    for m in maps:
                        ratios[m.stage].append(attention_in_mask_ratio(m.weights, mask))
            if not args.no_draw:
                stem = osp.splitext(osp.basename(path))[0]
                fig = draw_attention_figure(rgb, maps, args.alpha, args.fig_height)
                cv2.imwrite(osp.join(args.out_dir, f'{stem}_attention.png'), fig[..., ::-1])
        except ImageReadError as e:
            failed += 1
            print(f'\nerror: {e}', file=sys.stderr)
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    if constant is not None:
        print(constant)
        return 0
    if masks is not None:
        measured = {s: v for s, v in ratios.items() if v}
        if not measured:
            print(f'error: no image had a usable mask in {args.masks}', file=sys.stderr)
            return 2
        summary = {f'stage{s + 1}': dict(attention_in_mask_ratio=float(np.nanmean(v)),
                                         images=len(v)) for s, v in measured.items()}
        print('attention-in-mask ratio (share of |attention weight| on the objects over '
              'their share of the area; 1.0 = no localization):')
        for name, row in summary.items():
            print(f'  {name}: {row["attention_in_mask_ratio"]:.3f}  ({row["images"]} images)')
        with open(osp.join(args.out_dir, 'attention_in_mask.json'), 'w') as f:
            json.dump(dict(config=args.config, arch=args.arch, checkpoint=args.checkpoint,
                           seed=None if args.checkpoint else args.seed, deploy=not args.no_deploy,
                           masks=args.masks, stages=summary), f, indent=2)
    if not args.no_draw:
        print(f'{len(paths) - failed} image(s) drawn to {args.out_dir}/')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
