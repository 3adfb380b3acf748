"""mmswift: SwiftFormer backbones for OpenMMLab dense prediction."""
from . import compat  # noqa: F401  (applied on import, before anything loads)
from .version import __version__

__all__ = ['__version__']
