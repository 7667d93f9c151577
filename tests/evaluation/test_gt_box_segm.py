"""Mask metrics with SAM prompted by the ground-truth boxes."""
import pytest
import torch
from mmdet.registry import METRICS, MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

import gsam_mm  # noqa: F401
from gsam_mm.evaluation.gt_box_segm import mask_ious
from gsam_mm.fields import GT_BOX_PRED_INSTANCES

from ..conftest import tiny_model_config
from .test_coco_with_masks_metric import (build_dataset, evaluate, ground_truth_as_predictions,
                                          polygon_annotation, write_coco)


def test_mask_ious_by_hand():
    predicted = torch.zeros(3, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 4, 4, dtype=torch.bool)
    predicted[0, :2, :2] = True  # 4 pixels
    target[0, :2, :] = True      # 8 pixels, 4 shared
    predicted[1] = True
    target[1] = True

    ious = mask_ious(predicted, target)

    assert ious[0] == pytest.approx(0.5)
    assert ious[1] == pytest.approx(1.0)
    assert ious[2] == 0.0


def metric_inputs(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 80}]
    annotations = [polygon_annotation(1, 1, 1, 10, 10, 20),
                   polygon_annotation(2, 1, 2, 50, 30, 40)]
    categories = [{'id': 1, 'name': 'cell'}, {'id': 2, 'name': 'nucleus'}]
    ann_file = write_coco(tmp_path, images, annotations, categories)
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)
    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path)), classwise=True))
    return metric, dataset, samples


def test_metric_reports_gt_box_figures(tmp_path):
    metric, dataset, samples = metric_inputs(tmp_path)
    predictions = samples[0]['pred_instances']
    # The first mask is right, the second covers only the top half of its square.
    masks = predictions['masks'].clone()
    rows = masks[1].any(dim=1).nonzero().flatten()
    masks[1, rows[len(rows) // 2]:] = False
    samples[0][GT_BOX_PRED_INSTANCES] = {
        'labels': predictions['labels'], 'scores': torch.tensor([0.9, 0.8]),
        'masks': masks, 'mask_ious': mask_ious(masks, predictions['masks'])}

    scores = evaluate(metric, dataset, samples)

    assert scores['coco/segm_mAP'] == 1.0
    assert scores['coco/gt_box_mask_iou'] == pytest.approx(0.75, abs=0.01)
    assert scores['coco/gt_box_segm_cell_precision'] == 1.0
    # IoU 0.5 passes the 0.5 threshold only: 1 of 10 thresholds.
    assert scores['coco/gt_box_segm_nucleus_precision'] == pytest.approx(0.1, abs=0.01)
    assert scores['coco/gt_box_segm_mAP'] == pytest.approx(0.55, abs=0.01)
    assert scores['coco/gt_box_segm_mAP_50'] == 1.0


def test_metric_without_gt_box_results(tmp_path):
    metric, dataset, samples = metric_inputs(tmp_path)

    scores = evaluate(metric, dataset, samples)

    assert scores['coco/bbox_cell_precision'] == 1.0
    assert scores['coco/segm_cell_precision'] == 1.0
    assert not any('gt_box' in key for key in scores)


def original_pixel_sample(with_masks: bool = True) -> DetDataSample:
    """A 200x100 image resized by 0.5 into a padded 128 square, with two
    ground-truth instances in original pixels (loaded after Resize)."""
    sample = DetDataSample(metainfo=dict(
        img_shape=(128, 128), ori_shape=(100, 200), scale_factor=(0.5, 0.5),
        pad_shape=(128, 128), batch_input_shape=(128, 128), text=('cat', 'dog')))
    instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor([[10., 10., 60., 50.], [100., 20., 190., 90.]])),
        labels=torch.tensor([1, 0]))
    if with_masks:
        masks = torch.zeros(2, 100, 200, dtype=torch.uint8)
        masks[0, 10:50, 10:60] = 1
        masks[1, 20:90, 100:190] = 1
        instances.masks = BitmapMasks(masks.numpy(), 100, 200)
    sample.gt_instances = instances
    return sample


def test_model_segments_gt_boxes():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(128, evaluate_gt_boxes=True))
    model.eval()
    samples = [original_pixel_sample(), original_pixel_sample(with_masks=False)]
    with torch.no_grad():
        results = model.predict(torch.randn(2, 3, 128, 128), samples)

    segmented = results[0].get(GT_BOX_PRED_INSTANCES)
    assert segmented.masks.shape == (2, 100, 200)
    assert segmented.masks.dtype == torch.bool
    assert segmented.labels.tolist() == [1, 0]
    assert segmented.bboxes.tolist() == [[10., 10., 60., 50.], [100., 20., 190., 90.]]
    gt_masks = samples[0].gt_instances.masks.to_tensor(torch.bool, 'cpu')
    assert torch.allclose(segmented.mask_ious, mask_ious(segmented.masks, gt_masks))
    assert GT_BOX_PRED_INSTANCES not in results[1]
    assert model._gt_box_samples_skipped == 1


def test_model_skips_gt_boxes_by_default():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(128))
    model.eval()
    with torch.no_grad():
        results = model.predict(torch.randn(1, 3, 128, 128), [original_pixel_sample()])

    assert GT_BOX_PRED_INSTANCES not in results[0]


def test_classwise_keys_without_dataset_meta(tmp_path):
    metric, dataset, samples = metric_inputs(tmp_path)
    metric.process({}, samples)

    scores = metric.evaluate(len(samples))

    assert scores['coco/bbox_nucleus_precision'] == 1.0
    assert scores['coco/segm_nucleus_precision'] == 1.0
