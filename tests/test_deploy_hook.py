"""tools/test.py's DeployHook beside mmengine's EMAHook."""
import copy
from types import SimpleNamespace

import torch
from mmengine.hooks import EMAHook

from mmswift.engine.hooks.deploy_hook import DeployHook
from mmswift.models import SwiftFormer

from .conftest import randomize_


def test_ema_weights_are_swapped_in_before_the_fold_and_swapped_back_after():
    """The hooks in the Runner's order (by priority): the EMA weights are
    folded and tested, and EMA's swap back after the test does not fail on
    the folded shapes (it once raised 'size of tensor a (24) must match')."""
    net = torch.nn.Module()
    net.backbone = randomize_(SwiftFormer('xs'), seed=0)
    runner = SimpleNamespace(model=net, hooks=[])
    ema = EMAHook()
    ema.before_run(runner)
    randomize_(ema.ema_model.module, seed=1)  # averaged weights differ from the model's
    # what EMA tests: the averaged parameters with the model's own buffers
    # (update_buffers=False)
    expected_model = copy.deepcopy(net.backbone).eval()
    with torch.no_grad():
        for p, avg in zip(expected_model.parameters(), ema.ema_model.module.backbone.parameters()):
            p.copy_(avg)
    runner.hooks = sorted([DeployHook(), ema], key=_priority)
    assert [type(h).__name__ for h in runner.hooks] == ['EMAHook', 'DeployHook']
    x = torch.randn(1, 3, 64, 64)
    for hook in runner.hooks:
        hook.before_test_epoch(runner)
    with torch.no_grad():
        got = net.backbone(x)
        expected = expected_model(x)
    assert net.backbone.deploy
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for hook in runner.hooks:
        hook.after_test_epoch(runner)


def _priority(hook):
    from mmengine.runner.priority import get_priority
    return get_priority(hook.priority)
