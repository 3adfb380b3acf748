from .backbones import SwiftFormer

__all__ = ['SwiftFormer']
