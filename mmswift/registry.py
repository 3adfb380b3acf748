"""mmswift's registries, children of mmengine's root registries.

Because they hang off mmengine's roots (the way mmpretrain's do), a config
built by mmdet or mmseg can name ``type='mmswift.SwiftFormer'``: the scope
prefix sends the lookup to this registry, and ``locations`` imports the
module that registers it.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmswift',
    locations=['mmswift.models'])
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmswift',
    locations=['mmswift.engine'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, scope='mmswift',
    locations=['mmswift.datasets'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, scope='mmswift',
    locations=['mmswift.evaluation'])
