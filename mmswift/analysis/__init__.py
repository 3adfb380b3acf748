"""Measurements beside the models: speed, memory and FLOPs (``tools/benchmark.py``)."""
