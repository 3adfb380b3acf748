"""mmswift's Python API, one module per job: the deploy switch
(:mod:`.deploy`), the checkpoint check before mmengine loads one
(:mod:`.checkpoint`), models and inferencers built by mmdet's / mmseg's own
APIs (:mod:`.inference`), and the metrics of a finished test run
(:mod:`.metrics`)."""
from .checkpoint import check_checkpoint
from .deploy import DEPLOY_MESSAGE, switch_backbone_to_deploy
from .inference import build_inferencer, init_model
from .metrics import latest_test_metrics

__all__ = ['DEPLOY_MESSAGE', 'build_inferencer', 'check_checkpoint', 'init_model',
           'latest_test_metrics', 'switch_backbone_to_deploy']
