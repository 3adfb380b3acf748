"""Generate the demo datasets (the demo configs also do this on first use).

    python tools/generate_demo_data.py shapes data/demo_shapes      # COCO instance masks
    python tools/generate_demo_data.py scenes data/demo_scenes      # ADE20K-layout labels

Seeded and deterministic: the same arguments write the same files.
"""
import argparse
import os
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Generate a demo dataset')
    p.add_argument('kind', choices=['shapes', 'scenes'])
    p.add_argument('root', help='output folder (must not exist, or be empty)')
    p.add_argument('--num-train', type=int)
    p.add_argument('--num-val', type=int)
    p.add_argument('--size', type=int, default=256, help='image side in pixels')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if os.path.exists(args.root) and os.listdir(args.root):
        print(f'error: {args.root} exists and is not empty; choose another folder',
              file=sys.stderr)
        return 2
    kwargs = dict(size=args.size, seed=args.seed)
    if args.kind == 'shapes':
        from mmswift.datasets.shapes_coco import generate_shapes_coco as generate
        kwargs.update(num_train=args.num_train or 400, num_val=args.num_val or 50)
    else:
        from mmswift.datasets.scenes_ade import generate_scenes_ade as generate
        kwargs.update(num_train=args.num_train or 300, num_val=args.num_val or 50)
    if os.path.isdir(args.root):
        os.rmdir(args.root)
    generate(args.root, **kwargs)
    print(f'{args.kind}: {kwargs["num_train"]} train / {kwargs["num_val"]} val images of '
          f'{args.size}x{args.size} written to {args.root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
