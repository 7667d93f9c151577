"""Datasets and transforms; importing this package registers them with mmdet."""
from .coco_file import CocoAnnotations, load_coco_annotations
from .coco_with_masks import CocoWithMasksDataset
from .transforms import LoadGroundingAnnotations, LoadImageRGB

__all__ = [
    'CocoAnnotations', 'CocoWithMasksDataset', 'LoadGroundingAnnotations', 'LoadImageRGB',
    'load_coco_annotations'
]
