"""Export a SwiftFormer backbone to ONNX (deploy form by default) and check it
with onnxruntime.

    python tools/export_onnx.py ARCH [CHECKPOINT] --out FILE.onnx
    python tools/export_onnx.py l1 --out swiftformer_l1.onnx
    python tools/export_onnx.py xs work_dirs/demo-det/epoch_6.pth --out xs.onnx

The checkpoint may be any format the backbone loads (official, timm,
HuggingFace, an mmswift detector or segmentor). Height and width stay
dynamic; the check runs at --shape and at an odd size.
"""
import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description='Export a SwiftFormer backbone to ONNX')
    p.add_argument('arch', help='xs, s, l1 or l3')
    p.add_argument('checkpoint', nargs='?', help='weights to load (random without)')
    p.add_argument('--attn-norm', default='l2', choices=['l2', 'softmax'])
    p.add_argument('--out', required=True, help='output .onnx path')
    p.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--no-deploy', action='store_true', help='export the training form')
    p.add_argument('--tolerance', type=float, default=1e-4, help='max relative error')
    args = p.parse_args(argv)
    import torch

    import mmswift  # noqa: F401
    from mmswift.models import SwiftFormer
    from mmswift.models.export import export_onnx, onnx_max_relative_error
    from mmswift.errors import MMSwiftError
    from mmswift.models.pretrained import load_pretrained
    try:
        backbone = SwiftFormer(args.arch, attn_norm=args.attn_norm).eval()
        if args.checkpoint:
            load_pretrained(backbone, args.checkpoint, what='CHECKPOINT')
    except (MMSwiftError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    if not args.no_deploy:
        backbone.switch_to_deploy()
    export_onnx(backbone, args.out, tuple(args.shape), args.opset)
    h, w = args.shape
    err = onnx_max_relative_error(backbone, args.out,
                                  [torch.randn(1, 3, h, w), torch.randn(1, 3, h + 13, w - 7)])
    form = 'training' if args.no_deploy else 'deploy'
    print(f'{args.out}: SwiftFormer-{args.arch.upper()} ({form} form, opset {args.opset}); '
          f'onnxruntime vs PyTorch max relative error {err:.2e}')
    return 0 if err <= args.tolerance else 1


if __name__ == '__main__':
    sys.exit(main())
