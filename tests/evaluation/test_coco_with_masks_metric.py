"""CocoWithMasksMetric: ground truth evaluated against itself gives AP 1.0."""
import json
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoMetric
from mmdet.registry import DATASETS, METRICS
from mmengine.registry import init_default_scope
from PIL import Image

import gsam_mm.datasets  # noqa: F401  (registers the dataset and transforms)
import gsam_mm.evaluation  # noqa: F401  (registers the metric)
from gsam_mm.datasets.coco_file import load_coco_annotations
from gsam_mm.errors import ConfigError
from gsam_mm.evaluation import build_ground_truth_coco
from gsam_mm.fields import GT_BOX_PRED_INSTANCES

LOADING = [dict(type='LoadImageRGB'), dict(type='LoadGroundingAnnotations')]


@pytest.fixture(autouse=True, scope='module')
def mmdet_scope():
    init_default_scope('mmdet')


def square(x: float, y: float, side: float) -> list:
    return [x, y, x + side, y, x + side, y + side, x, y + side]


def write_coco(folder: Path, images: list, annotations: list,
               categories: Optional[list]) -> Path:
    """Write a COCO file and blank PNG images of the listed sizes."""
    for image in images:
        pixels = np.zeros((image['height'], image['width'], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / image['file_name'], format='PNG')
    content = {'images': images, 'annotations': annotations}
    if categories is not None:
        content['categories'] = categories
    ann_file = folder / 'annotations.json'
    ann_file.write_text(json.dumps(content))
    return ann_file


def polygon_annotation(annotation_id, image_id, category_id, x, y, side, iscrowd=0) -> dict:
    return {'id': annotation_id, 'image_id': image_id, 'category_id': category_id,
            'bbox': [x, y, side, side], 'area': side * side, 'iscrowd': iscrowd,
            'segmentation': [square(x, y, side)]}


def build_dataset(ann_file: Path, **kwargs):
    return DATASETS.build(dict(type='CocoWithMasksDataset', ann_file=str(ann_file),
                               data_prefix=dict(img=str(ann_file.parent)), pipeline=LOADING,
                               test_mode=True, **kwargs))


def ground_truth_as_predictions(dataset) -> list[dict]:
    """Turn each image's training instances into predictions with score 1."""
    samples = []
    for index in range(len(dataset)):
        results = dataset[index]
        keep = ~results['gt_ignore_flags']
        masks = torch.from_numpy(results['gt_masks'].masks[keep]).bool()
        samples.append({
            'img_id': results['img_id'],
            'ori_shape': results['ori_shape'],
            'pred_instances': {
                'bboxes': results['gt_bboxes'].tensor[torch.from_numpy(keep)],
                'scores': torch.ones(int(keep.sum())),
                'labels': torch.from_numpy(results['gt_bboxes_labels'][keep]),
                'masks': masks,
            },
        })
    return samples


def evaluate(metric, dataset, samples: list[dict]) -> dict:
    metric.dataset_meta = dataset.metainfo
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_ids_from_zero_give_ap_one(tmp_path):
    images = [{'id': 0, 'file_name': 'a.png', 'width': 100, 'height': 100},
              {'id': 1, 'file_name': 'b.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(0, 0, 1, 1, 1, 20),
                   polygon_annotation(1, 1, 1, 2, 2, 30)]
    ann_file = write_coco(tmp_path, images, annotations, [{'id': 1, 'name': 'cell'}])
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path))))
    scores = evaluate(metric, dataset, samples)

    assert scores['coco/bbox_mAP'] == 1.0
    assert scores['coco/segm_mAP'] == 1.0
    # mmdet's CocoMetric reads the file as is; pycocotools then counts the
    # match with annotation id 0 as unmatched.
    plain = CocoMetric(ann_file=str(ann_file), metric='bbox')
    assert evaluate(plain, dataset, samples)['coco/bbox_mAP'] < 1.0


def test_sparse_category_ids_written_back(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(1, 1, 3, 1, 1, 20),
                   polygon_annotation(2, 1, 7, 30, 30, 20),
                   polygon_annotation(3, 1, 90, 60, 60, 20)]
    categories = [{'id': 3, 'name': 'apple'}, {'id': 7, 'name': 'pear'},
                  {'id': 90, 'name': 'plum'}]
    ann_file = write_coco(tmp_path, images, annotations, categories)
    dataset = build_dataset(ann_file)

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path)), classwise=True,
                                outfile_prefix=str(tmp_path / 'results')))
    scores = evaluate(metric, dataset, ground_truth_as_predictions(dataset))
    written = json.loads((tmp_path / 'results.bbox.json').read_text())

    assert scores['coco/bbox_mAP'] == 1.0
    assert scores['coco/segm_mAP'] == 1.0
    assert sorted(result['category_id'] for result in written) == [3, 7, 90]
    assert scores['coco/bbox_plum_precision'] == 1.0
    assert scores['coco/segm_plum_precision'] == 1.0


def test_crowd_region_is_ignored(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}]
    annotations = [polygon_annotation(1, 1, 1, 4, 4, 16),
                   polygon_annotation(2, 1, 1, 30, 10, 20, iscrowd=1)]
    ann_file = write_coco(tmp_path, images, annotations, [{'id': 1, 'name': 'cat'}])
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)
    # A detection inside the crowd region must not count as a false positive.
    predictions = samples[0]['pred_instances']
    predictions['bboxes'] = torch.cat([predictions['bboxes'],
                                       torch.tensor([[32.0, 12.0, 48.0, 28.0]])])
    predictions['scores'] = torch.tensor([0.5, 0.9])
    predictions['labels'] = torch.tensor([0, 0])
    crowd_part = torch.zeros(1, 48, 64, dtype=torch.bool)
    crowd_part[0, 12:28, 32:48] = True
    predictions['masks'] = torch.cat([predictions['masks'], crowd_part])

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path))))
    scores = evaluate(metric, dataset, samples)

    assert len(metric._coco_api.anns) == 2
    assert scores['coco/bbox_mAP'] == 1.0
    assert scores['coco/segm_mAP'] == 1.0


def test_inferred_categories_and_placeholders(tmp_path):
    images = [{'id': 0, 'file_name': 'a.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(0, 0, 9, 1, 1, 20),
                   polygon_annotation(1, 0, 4, 40, 40, 20)]
    ann_file = write_coco(tmp_path, images, annotations, categories=None)
    dataset = build_dataset(ann_file, metainfo=dict(classes=('red', 'white')))

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path))))
    scores = evaluate(metric, dataset, ground_truth_as_predictions(dataset))

    assert metric.cat_ids == [4, 9]
    assert [category['name'] for category in metric._coco_api.dataset['categories']] == \
        ['red', 'white']
    assert scores['coco/segm_mAP'] == 1.0


def test_placeholder_category_not_evaluated(tmp_path):
    images = [{'id': 0, 'file_name': 'a.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(0, 0, 1, 1, 1, 20),
                   polygon_annotation(1, 0, 0, 40, 40, 20)]
    categories = [{'id': 0, 'name': '_background_'}, {'id': 1, 'name': 'person'}]
    ann_file = write_coco(tmp_path, images, annotations, categories)
    dataset = build_dataset(ann_file)

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path))))
    scores = evaluate(metric, dataset, ground_truth_as_predictions(dataset))

    assert metric.cat_ids == [1]
    assert [annotation['category_id'] for annotation in metric._coco_api.anns.values()] == [1]
    assert scores['coco/bbox_mAP'] == 1.0


def test_metric_needs_no_image_folder(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 100},
              {'id': 2, 'file_name': 'b.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(1, 1, 1, 1, 1, 20), polygon_annotation(2, 2, 1, 5, 5, 30)]
    ann_file = write_coco(tmp_path, images, annotations, [{'id': 1, 'name': 'cat'}])
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)
    (tmp_path / 'a.png').unlink()  # the metric does not check image files again

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file)))
    scores = evaluate(metric, dataset, samples)

    assert scores['coco/bbox_mAP'] == 1.0


def test_only_processed_images_are_evaluated(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 100},
              {'id': 2, 'file_name': 'b.png', 'width': 100, 'height': 100}]
    annotations = [polygon_annotation(1, 1, 1, 1, 1, 20), polygon_annotation(2, 2, 1, 5, 5, 30)]
    ann_file = write_coco(tmp_path, images, annotations, [{'id': 1, 'name': 'cat'}])
    dataset = build_dataset(ann_file)
    first_image_only = ground_truth_as_predictions(dataset)[:1]

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file)))
    scores = evaluate(metric, dataset, first_image_only)

    assert metric.img_ids == [1]
    assert scores['coco/segm_mAP'] == 1.0


def test_result_for_unknown_image_is_rejected(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 100, 'height': 100}]
    ann_file = write_coco(tmp_path, images, [polygon_annotation(1, 1, 1, 1, 1, 20)],
                          [{'id': 1, 'name': 'cat'}])
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)
    samples[0]['img_id'] = 5

    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file)))

    with pytest.raises(ConfigError, match=r'ids \[5\]\) are not in'):
        evaluate(metric, dataset, samples)


def box_only_inputs(tmp_path):
    """Build a metric for one image with a masked square at (4, 4) and a
    box-only object whose box is 24 px at (30, 10). The predictions find
    both, the box-only object with a correct diamond mask."""
    images = [{'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}]
    box_only = {'id': 2, 'image_id': 1, 'category_id': 1, 'bbox': [30, 10, 24, 24],
                'iscrowd': 0}
    ann_file = write_coco(tmp_path, images, [polygon_annotation(1, 1, 1, 4, 4, 16), box_only],
                          [{'id': 1, 'name': 'cat'}])
    dataset = build_dataset(ann_file)
    samples = ground_truth_as_predictions(dataset)

    rows, columns = np.mgrid[:48, :64]
    diamond = np.abs(rows + 0.5 - 22) + np.abs(columns + 0.5 - 42) <= 12
    predictions = samples[0]['pred_instances']
    predictions['masks'][1] = torch.from_numpy(diamond)
    predictions['scores'] = torch.tensor([0.9, 0.8])
    metric = METRICS.build(dict(type='CocoWithMasksMetric', ann_file=str(ann_file),
                                data_prefix=dict(img=str(tmp_path))))
    return metric, dataset, samples


def test_box_only_ignored_in_segm(tmp_path, log_records):
    metric, dataset, samples = box_only_inputs(tmp_path)
    # Against the rectangle the diamond has IoU 312 / 576 = 0.54, which
    # would make it a false positive and a miss at the thresholds above 0.5.
    assert samples[0]['pred_instances']['masks'][1].sum() == 312

    scores = evaluate(metric, dataset, samples)

    assert scores['coco/segm_mAP'] == 1.0
    assert scores['coco/bbox_mAP'] == 1.0
    messages = [record.getMessage() for record in log_records]
    assert '1 box-only annotations (no mask) are ignored in segm evaluation (iscrowd=1) ' \
        'and counted in bbox evaluation' in messages


def test_box_only_counted_in_bbox(tmp_path):
    metric, dataset, samples = box_only_inputs(tmp_path)
    predictions = samples[0]['pred_instances']
    for key in ('bboxes', 'scores', 'labels', 'masks'):
        predictions[key] = predictions[key][:1]  # no detection of the box-only object

    scores = evaluate(metric, dataset, samples)

    assert scores['coco/bbox_mAP_50'] == pytest.approx(0.5, abs=0.01)
    assert scores['coco/segm_mAP'] == 1.0
    assert [annotation['iscrowd'] for annotation in metric._coco_api.anns.values()] == [0, 0]


def test_ground_truth_box_clipped_and_area_from_mask(tmp_path):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}]
    # The box runs 10 px past the right edge; the file's area is wrong.
    annotation = {'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [50, 4, 24, 10],
                  'area': 999, 'iscrowd': 0, 'segmentation': [square(50, 4, 10)]}
    ann_file = write_coco(tmp_path, images, [annotation], [{'id': 1, 'name': 'cat'}])
    annotations = load_coco_annotations(str(ann_file), str(tmp_path))

    for iou_type in ('bbox', 'segm'):
        ground_truth = build_ground_truth_coco(annotations, iou_type)
        (record,) = ground_truth.anns.values()
        assert record['bbox'] == [50.0, 4.0, 14.0, 10.0]
        assert record['area'] == 100.0
    with pytest.raises(ValueError, match='iou_type must be one of'):
        build_ground_truth_coco(annotations, 'keypoints')


def test_box_only_ignored_in_gt_box_segm(tmp_path):
    metric, dataset, samples = box_only_inputs(tmp_path)
    predictions = samples[0]['pred_instances']
    # SAM prompted by the two ground-truth boxes returns the same masks.
    samples[0][GT_BOX_PRED_INSTANCES] = {
        'labels': predictions['labels'], 'scores': predictions['scores'],
        'masks': predictions['masks'], 'mask_ious': torch.tensor([1.0, 0.54])}

    scores = evaluate(metric, dataset, samples)

    assert scores['coco/gt_box_segm_mAP'] == 1.0
