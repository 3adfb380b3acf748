"""Convert a SwiftFormer checkpoint (official, timm, HuggingFace, or an
mmswift detector/segmentor) into an mmswift backbone checkpoint.

    python tools/convert_checkpoint.py swiftformer_l1.pth checkpoints/swiftformer_l1.pth --arch l1

The output holds ``{'state_dict': ..., 'meta': ...}`` with mmswift's keys, the
file that ``init_cfg=dict(type='Pretrained', checkpoint=...)`` points at in
the configs (it also loads the input directly; converting once is faster and
lets you check the variant). Exit status 2 with one ``error:`` line for a
file that is not a SwiftFormer checkpoint or not of ``--arch``.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmswift.engine.launch import run_tool
from mmswift.fileio import read_checkpoint
from mmswift.models import SwiftFormer
from mmswift.models.pretrained import (LAYOUT_ATTN_NORM, convert_state_dict, describe_arch,
                                       extract_state_dict, infer_arch, load_pretrained)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('src', help='checkpoint file (.pth/.bin/.safetensors) or HF folder')
    p.add_argument('dst', help='output .pth')
    p.add_argument('--arch', help='expected variant (xs, s, l1, l3); checked, '
                   'and inferred from the weights when omitted')
    p.add_argument('--attn-norm', default=None, choices=['l2', 'softmax'],
                   help="the attention form the weights were trained with, recorded in the "
                   "output (meta and the attn_norm_code buffers) and checked when loading: "
                   "'softmax' for the pre-July-2023 code and the HuggingFace port (its "
                   "default there), 'l2' (default elsewhere) for the official code since")
    return p.parse_args(argv)


def convert(args) -> None:
    raw = extract_state_dict(read_checkpoint(args.src, what='SRC'), args.src)
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
    attn_norm = args.attn_norm or LAYOUT_ATTN_NORM.get(fmt, 'l2')
    model = SwiftFormer(arch, out_norm_cfg=dict(type='BN') if has_out_norms else None,
                        attn_norm=attn_norm)
    report = load_pretrained(model, args.src, what='SRC')
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    meta = dict(arch=arch, source=osp.basename(args.src), source_format=fmt)
    meta['attn_norm'] = attn_norm
    torch.save(dict(state_dict=model.state_dict(), meta=meta), args.dst)
    print(f'{args.src} ({fmt}, {describe_arch(model.layers, model.embed_dims, model.arch_settings)}): '
          f'{len(report["loaded"])} tensors written to {args.dst}; dropped '
          f'{len(report["dropped"])}: {report["dropped"]}')


def main(argv=None) -> int:
    return run_tool(convert, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
