from .backbones import SwiftFormer
from .classifier import SwiftFormerClassifier

__all__ = ['SwiftFormer', 'SwiftFormerClassifier']
