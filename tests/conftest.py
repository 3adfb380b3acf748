import os
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and BN statistic a random, non-trivial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if not t.is_floating_point():
                continue
            if name.endswith('running_var'):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return module


def run_py(*args, env=None, timeout=600, cwd=REPO):
    """Run ``python args...`` and return the CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONPATH=REPO)
    full_env.update(env or {})
    return subprocess.run([PYTHON, *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def hf_swiftformer():
    """Factory of transformers' SwiftFormer with random weights."""
    from transformers import (SwiftFormerConfig, SwiftFormerForImageClassification,
                              SwiftFormerModel)
    from mmswift.models import SwiftFormer

    def make(arch: str, classifier: bool = False, seed: int = 0):
        a = SwiftFormer.arch_settings[arch]
        cfg = SwiftFormerConfig(depths=a['layers'], embed_dims=a['embed_dims'],
                                num_labels=10)
        cls = SwiftFormerForImageClassification if classifier else SwiftFormerModel
        return randomize_(cls(cfg), seed).eval()

    return make
