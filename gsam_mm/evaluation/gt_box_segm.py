"""Mask quality with perfect detection: COCO segm AP of SAM's masks for the
ground-truth boxes, and their mean IoU with the ground-truth masks.

Set against the ordinary segm AP, these separate the two halves of
Grounded-SAM. A high figure here with a low ordinary segm AP means the
detector is what needs work; a low figure here means SAM does.
"""
import logging
from collections.abc import Sequence
from typing import Optional

import numpy as np
import torch
from mmdet.datasets.api_wrappers import COCO, COCOeval
from mmdet.structures.mask import encode_mask_results
from mmengine.logging import print_log

# Metric names, reported under the evaluator's prefix (`coco/`).
GT_BOX_SEGM_MAP = 'gt_box_segm_mAP'
GT_BOX_SEGM_MAP_50 = 'gt_box_segm_mAP_50'
GT_BOX_MASK_IOU = 'gt_box_mask_iou'

# Key of a processed result that contains its ground-truth-box masks.
GT_BOX_RESULT = 'gt_box'


def encode_gt_box_result(instances: dict) -> dict:
    """Turn a data sample's ground-truth-box instances into numpy arrays and
    compressed RLE masks, as `CocoMetric.process` does for predictions.

    Args:
        instances: `labels` (N,), `scores` (N,), `masks` (N, H, W) bool and
            `mask_ious` (N,) tensors.
    """
    return {
        'labels': instances['labels'].cpu().numpy(),
        'scores': instances['scores'].cpu().numpy(),
        'masks': encode_mask_results(instances['masks'].detach().cpu().numpy()),
        'mask_ious': instances['mask_ious'].cpu().numpy(),
    }


def per_category_ap(coco_eval: COCOeval) -> list[float]:
    """Return the AP over IoU 0.5:0.95 of every evaluated category, NaN for
    a category without ground truth (all areas, the largest max-detections)."""
    precision = coco_eval.eval['precision']  # (iou, recall, category, area, max dets)
    values = []
    for category_index in range(precision.shape[2]):
        category_precision = precision[:, :, category_index, 0, -1]
        category_precision = category_precision[category_precision > -1]
        values.append(float(np.mean(category_precision)) if category_precision.size
                      else float('nan'))
    return values


def evaluate_gt_box_masks(coco_gt: COCO, results: Sequence[dict], *, cat_ids: Sequence[int],
                          img_ids: Sequence[int], max_dets: Sequence[int],
                          iou_thrs: Optional[np.ndarray],
                          category_names: Optional[Sequence[str]] = None) -> dict[str, float]:
    """Compute segm AP and mean mask IoU of the ground-truth-box masks.

    Each mask is a detection of its ground-truth category whose score is
    SAM's predicted IoU, so AP also rewards SAM when that IoU ranks its bad
    masks low.

    Args:
        coco_gt: the ground truth the ordinary metrics use.
        results: processed results; those with a `GT_BOX_RESULT` entry
            count, each with `img_id`.
        cat_ids: COCO category id of every label.
        img_ids: the evaluated images.
        max_dets: COCOeval's max detections per image.
        iou_thrs: COCOeval's IoU thresholds, None for COCO's default.
        category_names: when given, a per-category AP is added as
            `gt_box_segm_{name}_precision`.

    Returns:
        The metrics by name; empty when no evaluated image has a ground-truth
        instance.
    """
    detections = []
    mask_ious = []
    for result in results:
        gt_box = result.get(GT_BOX_RESULT)
        if gt_box is None:
            continue
        mask_ious.append(gt_box['mask_ious'])
        for label, score, rle in zip(gt_box['labels'], gt_box['scores'], gt_box['masks']):
            counts = rle['counts']
            detections.append({
                'image_id': result['img_id'],
                'category_id': cat_ids[int(label)],
                'score': float(score),
                'segmentation': {'size': rle['size'],
                                 'counts': counts.decode() if isinstance(counts, bytes)
                                 else counts},
            })
    if not detections:
        print_log('No evaluated image has a ground-truth instance, so the ground-truth-box '
                  'mask metrics are left out', logger='current', level=logging.WARNING)
        return {}

    coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), 'segm')
    coco_eval.params.catIds = list(cat_ids)
    coco_eval.params.imgIds = list(img_ids)
    coco_eval.params.maxDets = list(max_dets)
    if iou_thrs is not None:
        coco_eval.params.iouThrs = iou_thrs
    print_log('Evaluating segm with SAM prompted by the ground-truth boxes...',
              logger='current')
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()

    metrics = {
        GT_BOX_SEGM_MAP: round(float(coco_eval.stats[0]), 3),
        GT_BOX_SEGM_MAP_50: round(float(coco_eval.stats[1]), 3),
        GT_BOX_MASK_IOU: round(float(np.concatenate(mask_ious).mean()), 3),
    }
    if category_names is not None:
        for name, value in zip(category_names, per_category_ap(coco_eval)):
            metrics[f'gt_box_segm_{name}_precision'] = round(value, 3)
    return metrics


def mask_ious(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the IoU (N,) of each predicted mask (N, H, W) with its target
    (N, H, W); a pair of empty masks has IoU 0."""
    predicted = predicted.bool().flatten(1)
    target = target.bool().flatten(1)
    intersection = (predicted & target).sum(1).float()
    union = (predicted | target).sum(1).float()
    return intersection / union.clamp(min=1)
