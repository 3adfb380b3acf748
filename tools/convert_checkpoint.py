"""Convert a SwiftFormer checkpoint (official, timm, HuggingFace, or an
mmswift detector/segmentor) into an mmswift backbone checkpoint.

    python tools/convert_checkpoint.py swiftformer_l1.pth checkpoints/swiftformer_l1.pth --arch l1

The output holds ``{'state_dict': ..., 'meta': ...}`` with mmswift's keys, the
file that ``init_cfg=dict(type='Pretrained', checkpoint=...)`` points at in
the configs (it also loads the input directly; converting once is faster and
lets you check the variant).
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmswift.models import SwiftFormer
from mmswift.models.pretrained import (CheckpointError, extract_state_dict, convert_state_dict,
                                       describe_arch, infer_arch, load_pretrained,
                                       read_checkpoint)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='checkpoint file (.pth/.bin/.safetensors) or HF folder')
    p.add_argument('dst', help='output .pth')
    p.add_argument('--arch', help='expected variant (xs, s, l1, l3); checked, '
                   'and inferred from the weights when omitted')
    p.add_argument('--attn-norm', default=None, choices=['l2', 'softmax'],
                   help="recorded in meta: 'softmax' for checkpoints of the "
                   'pre-July-2023 code and the HuggingFace port')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        raw = extract_state_dict(read_checkpoint(args.src), args.src)
        native, fmt, _ = convert_state_dict(raw)
        layers, dims = infer_arch(native)
        arch = args.arch
        if arch is None:
            name = describe_arch(layers, dims, SwiftFormer.arch_settings)
            if not name.startswith('SwiftFormer-'):
                arch = dict(layers=layers, embed_dims=dims)
            else:
                arch = name.split('-', 1)[1].lower()
        # keep a detector's/segmentor's output norms when the source has them
        has_out_norms = any(k.startswith('norm') for k in native)
        model = SwiftFormer(arch, out_norm_cfg=dict(type='BN') if has_out_norms else None)
        report = load_pretrained(model, args.src)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(arch=arch, source=osp.basename(args.src), source_format=fmt)
    if args.attn_norm:
        meta['attn_norm'] = args.attn_norm
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.dst)
    print(f'{args.src} ({fmt}, {describe_arch(model.layers, model.embed_dims, model.arch_settings)}): '
          f'{len(report["loaded"])} tensors written to {args.dst}; dropped '
          f'{len(report["dropped"])}: {report["dropped"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
