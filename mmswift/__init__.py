"""mmswift: SwiftFormer backbones for OpenMMLab dense prediction.

``custom_imports=dict(imports=['mmswift'])`` in a config registers the
backbone, and nothing else: importing mmswift changes nothing in mmengine
or torch. The stack fixes (:mod:`mmswift.compat`) are applied by mmswift's
tools and by mmswift's hooks when a Runner is built from an mmswift config.
The demo datasets (:mod:`mmswift.datasets`) and hooks (:mod:`mmswift.engine`)
are imported by their registries when a config names them.
"""
from . import models  # noqa: F401  (registers mmswift.SwiftFormer)
from .version import __version__

__all__ = ['__version__']
