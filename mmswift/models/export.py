"""ONNX export of the SwiftFormer backbone, checked against PyTorch."""
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

from .backbones.swiftformer import SwiftFormer


def export_onnx(backbone: SwiftFormer, path: str, input_hw: Tuple[int, int] = (224, 224),
                opset: int = 17, dynamic: bool = True) -> str:
    """Write ``backbone`` (eval mode; deploy form if switched) to ``path``.

    Input ``image`` is N x C x H x W; outputs ``stage{k}`` are the emitted
    stages. With ``dynamic`` batch, height and width are free.
    """
    if opset < 17:
        raise ValueError(f'opset {opset}: SwiftFormer export needs opset >= 17')
    backbone = backbone.eval()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    names = [f'stage{i + 1}' for i in backbone.out_indices]
    x = torch.randn(1, 3, *input_hw)
    axes: Dict[str, Dict[int, str]] = {}
    if dynamic:
        axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({n: {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'} for n in names})
    torch.onnx.export(backbone, (x, ), path, opset_version=opset, input_names=['image'],
                      output_names=names, dynamic_axes=axes or None, dynamo=False)
    return path


def onnx_max_relative_error(backbone: SwiftFormer, path: str,
                            inputs: Sequence[torch.Tensor]) -> float:
    """Largest ``|onnx - torch| / max|torch|`` over outputs and ``inputs``."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            ref = backbone.eval()(x)
            got = sess.run(None, {'image': x.numpy()})
            for r, g in zip(ref, got):
                r = r.numpy()
                worst = max(worst, float(np.abs(r - g).max() / max(np.abs(r).max(), 1e-12)))
    return worst
