"""Evaluation metrics; importing this package registers them with mmdet."""
from .coco_metric import CocoWithMasksMetric, build_ground_truth_coco

__all__ = ['CocoWithMasksMetric', 'build_ground_truth_coco']
