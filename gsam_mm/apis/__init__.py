"""Inference on new images: the Python API and the COCO results writer."""
from .coco_results import (detections_to_coco, image_ids_from_annotations,
                           match_annotation_images, run_info)
from .inferencer import Detections, GroundedSAMInferencer, PromptCategories

__all__ = ['Detections', 'GroundedSAMInferencer', 'PromptCategories', 'detections_to_coco',
           'image_ids_from_annotations', 'match_annotation_images', 'run_info']
