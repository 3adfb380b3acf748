"""Runtime pieces: config handling for the tools, hooks."""
from .hooks import FeatureMapVisHook

__all__ = ['FeatureMapVisHook']
