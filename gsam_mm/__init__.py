"""Grounded-SAM fine-tuning components for MMDetection 3.x.

Importing the package registers the dataset, transforms, metric, model,
losses and hooks in MMDetection's registries (`default_scope='mmdet'`), so
configs can name them after `custom_imports=dict(imports=['gsam_mm'])`.
"""
from . import apis, datasets, engine, evaluation, models  # noqa: F401

__version__ = '0.1.0'
