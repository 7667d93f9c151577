"""A per-category table of the test metrics, for `tools/test.py`."""
import math
from collections.abc import Sequence

from terminaltables import AsciiTable

from .gt_box_segm import GT_BOX_MASK_IOU, GT_BOX_SEGM_MAP

# Table columns: header and the metric name of the per-category AP and the mAP.
COLUMNS = (('bbox AP', 'bbox'), ('segm AP', 'segm'), ('segm AP, GT boxes', 'gt_box_segm'))


def format_metrics_table(metrics: dict, class_names: Sequence[str],
                         prefix: str = 'coco/') -> str:
    """Return an ASCII table of AP per category for bbox, segm and segm with
    ground-truth boxes, followed by the mAP of each, a line with their
    mAP@0.5 and the mean mask IoU.

    Categories without ground truth in the evaluated images (NaN in every
    column) are left out and counted under the table. Columns whose metric
    is absent from `metrics` are left out. Without any per-category key
    (an evaluator with `classwise=False`) the table has the mAP row only,
    and a line under it says how to get per-category AP.

    Args:
        metrics: the evaluator's output, e.g. `coco/segm_person_precision`.
        class_names: category names in label order.
        prefix: the evaluator's key prefix.
    """
    columns = [(header, name) for header, name in COLUMNS if f'{prefix}{name}_mAP' in metrics]
    headers = [header for header, _ in columns]
    mean_ap_cells = [_format(metrics[f'{prefix}{name}_mAP']) for _, name in columns]
    per_category_keys = [[f'{prefix}{name}_{class_name}_precision' for _, name in columns]
                         for class_name in class_names]

    if any(key in metrics for keys in per_category_keys for key in keys):
        category_rows = _category_rows(metrics, class_names, per_category_keys)
        table = AsciiTable([['category'] + headers, *category_rows,
                            ['mAP (categories above)'] + mean_ap_cells])
        table.inner_footing_row_border = True
        lines = [table.table]
        left_out = len(class_names) - len(category_rows)
        if left_out:
            lines.append(f'Left out {left_out} of {len(class_names)} categories, which have '
                         'no ground truth in the evaluated images.')
    else:
        table = AsciiTable([['metric'] + headers, ['mAP'] + mean_ap_cells])
        lines = [table.table, 'Per-category AP needs classwise=True in the evaluator, e.g. '
                 '--cfg-options test_evaluator.classwise=True.']

    ap50_cells = [f'{header} {_format(metrics[prefix + name + "_mAP_50"])}'
                  for header, name in columns if f'{prefix}{name}_mAP_50' in metrics]
    if ap50_cells:
        lines.append('mAP@0.5: ' + ', '.join(ap50_cells))
    if f'{prefix}{GT_BOX_MASK_IOU}' in metrics:
        lines.append(f'Mean mask IoU with SAM prompted by the ground-truth boxes: '
                     f'{metrics[prefix + GT_BOX_MASK_IOU]:.3f}')
    if f'{prefix}{GT_BOX_SEGM_MAP}' in metrics:
        lines.append('segm AP, GT boxes is the mask AP when detection is perfect: far above '
                     'segm AP means the detector limits the masks; close to it means SAM does.')
    return '\n'.join(lines)


def _category_rows(metrics: dict, class_names: Sequence[str],
                   per_category_keys: Sequence[Sequence[str]]) -> list[list[str]]:
    """Return one row per category that has a value in some column."""
    rows = []
    for class_name, keys in zip(class_names, per_category_keys):
        values = [metrics.get(key, math.nan) for key in keys]
        if not all(math.isnan(value) for value in values):
            rows.append([class_name] + [_format(value) for value in values])
    return rows


def _format(value: float) -> str:
    return '-' if math.isnan(value) else f'{value:.3f}'
