"""mmswift: SwiftFormer backbones for OpenMMLab dense prediction.

``custom_imports=dict(imports=['mmswift'])`` in a config applies the stack
fixes (:mod:`mmswift.compat`) and registers the backbone; the demo datasets
(:mod:`mmswift.datasets`) and hooks (:mod:`mmswift.engine`) are imported by
their registries when a config names them.
"""
from . import compat  # noqa: F401  (applied before anything loads a checkpoint)
from . import models  # noqa: F401  (registers mmswift.SwiftFormer)
from .version import __version__

__all__ = ['__version__']
