"""The per-category table that tools/test.py prints."""
import math

from gsam_mm.evaluation.report import format_metrics_table

METRICS = {
    'coco/bbox_mAP': 0.25, 'coco/segm_mAP': 0.3, 'coco/gt_box_segm_mAP': 0.8,
    'coco/gt_box_mask_iou': 0.875,
    'coco/bbox_cat_precision': 0.5, 'coco/segm_cat_precision': 0.6,
    'coco/gt_box_segm_cat_precision': 0.9,
    'coco/bbox_dog_precision': math.nan, 'coco/segm_dog_precision': math.nan,
    'coco/gt_box_segm_dog_precision': math.nan,
}


def test_table_rows_and_footer():
    lines = format_metrics_table(METRICS, ['cat', 'dog']).splitlines()

    assert [cell.strip() for cell in lines[1].split('|')[1:4]] == ['category', 'bbox AP',
                                                                   'segm AP']
    assert [cell.strip() for cell in lines[3].split('|')[1:5]] == ['cat', '0.500', '0.600',
                                                                   '0.900']
    assert [cell.strip() for cell in lines[5].split('|')[1:5]] == [
        'mAP (categories above)', '0.250', '0.300', '0.800']
    assert not any('dog' in line for line in lines)
    assert lines[7].startswith('Left out 1 of 2 categories')
    assert lines[8].endswith(': 0.875')


def test_map50_line_follows_table():
    metrics = dict(METRICS, **{'coco/bbox_mAP_50': 0.5, 'coco/segm_mAP_50': 0.625,
                               'coco/gt_box_segm_mAP_50': 1.0})
    lines = format_metrics_table(metrics, ['cat', 'dog']).splitlines()

    assert lines[8] == 'mAP@0.5: bbox AP 0.500, segm AP 0.625, segm AP, GT boxes 1.000'


def test_table_without_gt_box_metrics():
    metrics = {key: value for key, value in METRICS.items() if 'gt_box' not in key}
    text = format_metrics_table(metrics, ['cat', 'dog'])

    assert 'GT boxes' not in text
    assert 'mask IoU' not in text


def test_table_without_classwise_keys():
    # classwise=False: the evaluator writes the mAP of each metric, no per-category AP.
    metrics = {key: value for key, value in METRICS.items() if not key.endswith('_precision')}
    lines = format_metrics_table(metrics, ['cat', 'dog']).splitlines()

    assert [cell.strip() for cell in lines[1].split('|')[1:5]] == [
        'metric', 'bbox AP', 'segm AP', 'segm AP, GT boxes']
    assert [cell.strip() for cell in lines[3].split('|')[1:5]] == [
        'mAP', '0.250', '0.300', '0.800']
    assert len(lines) == 8
    assert lines[5].startswith('Per-category AP needs classwise=True in the evaluator')
    assert lines[6].endswith(': 0.875')
    text = '\n'.join(lines)
    assert 'Left out' not in text
    assert 'categories above' not in text
