"""Draw a trained model's predictions on images.

    python tools/image_demo.py IMAGE CONFIG CHECKPOINT [--out-dir outputs]

Detection configs draw boxes and masks (mmdet's DetInferencer); segmentation
configs draw a coloured class overlay (mmseg's MMSegInferencer). The PNGs go
to ``OUT_DIR/vis/``. ``--device`` defaults to cuda:0 where CUDA is available,
else cpu, and the tool prints which one it uses.
"""
import argparse
import sys


def parse_args(argv=None):
    from mmswift.engine.launch import add_device_argument
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('inputs', help='image file or folder')
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--out-dir', default='outputs', help='output folder')
    add_device_argument(p)
    p.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    p.add_argument('--opacity', type=float, default=0.5, help='segmentation overlay opacity')
    p.add_argument('--no-deploy', action='store_true',
                   help='run the training form of the backbone (default: its deploy form)')
    return p.parse_args(argv)


def demo(args) -> None:
    from mmswift.apis import build_inferencer
    print(f'device: {args.device}')
    inferencer = build_inferencer(args.config, args.checkpoint, args.device,
                                  deploy=not args.no_deploy)
    if type(inferencer).__name__ == 'MMSegInferencer':
        inferencer(args.inputs, out_dir=args.out_dir, opacity=args.opacity)
    else:
        inferencer(args.inputs, out_dir=args.out_dir, pred_score_thr=args.score_thr,
                   no_save_pred=True)
    print(f'drawn predictions written to {args.out_dir}/vis/')


def main(argv=None) -> int:
    from mmswift.engine.launch import run_tool
    return run_tool(demo, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
