"""COCO box and mask AP with ground truth from the validated annotation loader."""
import logging
from typing import Any, Optional, Sequence, Union

from mmdet.datasets.api_wrappers import COCO
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import print_log

from ..datasets.coco_file import (CocoAnnotations, ImageRecord, InstanceRecord,
                                  check_on_bad_annotation, join_data_root, load_coco_annotations)
from ..datasets.masks import instance_mask_to_rle, rle_area
from ..errors import ConfigError
from ..fields import CATEGORY_IDS, GT_BOX_PRED_INSTANCES, ON_BAD_ANNOTATION
from .gt_box_segm import GT_BOX_RESULT, encode_gt_box_result, evaluate_gt_box_masks

# COCOeval iouTypes that `build_ground_truth_coco` builds.
IOU_TYPES = ('bbox', 'segm')


@METRICS.register_module()
class CocoWithMasksMetric(CocoMetric):
    """mmdet's `CocoMetric` whose ground truth passes the dataset's checks.

    mmdet's metric reads the annotation file with `COCO(ann_file)`, which
    differs from what `CocoWithMasksDataset` trains on. This metric builds
    the ground truth with the same loader instead, so that:

    - annotation ids are renumbered from 1, because pycocotools counts a
      match with ground-truth id 0 as unmatched (ids from 0 would score
      every true positive of that object as a false positive);
    - a file without a `categories` list gets the same inferred categories;
    - placeholder categories and categories left out by
      `metainfo.classes` are not evaluated;
    - `cat_ids` come from the dataset metainfo, in label order, so results
      are written back with the file's category ids without looking names
      up;
    - crowd and "ignore" regions are evaluated as iscrowd=1 (ignored);
    - a box-only annotation (no polygon, RLE or mask file) is a normal
      ground truth for bbox but iscrowd=1 for segm, because its only mask
      is its box rectangle, against which a correct, non-rectangular mask
      would score as a miss. As a crowd region the rectangle makes a segm
      detection of that category that lies inside it count as neither a
      true nor a false positive. A log line counts these annotations;
    - the ground-truth `bbox` is the file's box clipped to the image (or
      the mask's tight box where the file gives none), not the raw value;
    - `area`, which sets COCO's small, medium and large ranges for both
      bbox and segm, is the mask's pixel count (the box's pixel count for
      a box-only annotation), not the file's `area` field;
    - only images that reached `process` are evaluated, so images that the
      dataset dropped (or a subset run left out) do not count as missed;
    - with `classwise=True` the per-category AP keys name their metric
      (`bbox_{name}_precision`, `segm_{name}_precision`), where mmdet
      writes `{name}_precision` for both and keeps only the last.

    When the model adds SAM's masks for the ground-truth boxes
    (`GroundingSAM(evaluate_gt_boxes=True)`), the metric also reports
    `gt_box_segm_mAP`, `gt_box_segm_mAP_50` and `gt_box_mask_iou`; see
    `gt_box_segm.py`. The two AP figures use the segm ground truth.
    NOTE: `gt_box_mask_iou` is computed by the model against the training
    mask targets, so there a box-only annotation still counts with its box
    rectangle as the mask.

    Args:
        ann_file: COCO file of the evaluated split, relative to `data_root`
            unless absolute.
        data_root: root folder, as in the dataset config.
        data_prefix: `dict(img=...)`, the image folder relative to
            `data_root`, as in the dataset config. It is only read for
            images without width and height in the file and for
            `mask_path` masks. Image files are not checked again because
            the dataset has already checked them.
        on_bad_annotation: 'error' or 'skip'. None (the default) follows
            the evaluated dataset's setting, so that both drop the same
            records, and 'error' without a dataset.
        metric: metrics to compute, 'bbox' and/or 'segm' (or mmdet's
            'proposal' and 'proposal_fast').
        **kwargs: other arguments of mmdet's `CocoMetric` (classwise,
            outfile_prefix, format_only, ...), except `ann_file`.
    """

    def __init__(self, ann_file: str, *, data_root: str = '',
                 data_prefix: Optional[dict] = None,
                 on_bad_annotation: Optional[str] = None,
                 metric: Union[str, Sequence[str]] = ('bbox', 'segm'),
                 **kwargs: Any) -> None:
        metrics = [metric] if isinstance(metric, str) else list(metric)
        super().__init__(ann_file=None, metric=metrics, **kwargs)
        self.gt_ann_file = join_data_root(data_root, ann_file)
        self.gt_image_dir = join_data_root(data_root, (data_prefix or {}).get('img', ''))
        if on_bad_annotation is not None:
            check_on_bad_annotation(on_bad_annotation)
        self.on_bad_annotation = on_bad_annotation
        # mmdet's CocoMetric evaluates against `_coco_api`; 'segm' swaps in this one.
        self._segm_coco_api: Optional[COCO] = None

    @CocoMetric.dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Take the evaluated dataset's metainfo and load the ground truth.

        MMEngine's loops set this when they are built, before training
        starts, so an invalid annotation file stops the run before step 0
        instead of at the first validation.
        """
        CocoMetric.dataset_meta.fset(self, dataset_meta)
        self._coco_api = self._segm_coco_api = None
        self._build_ground_truth()

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Collect predictions; the ground truth comes from the annotation file."""
        self._build_ground_truth()
        super().process(data_batch, data_samples)
        processed = self.results[len(self.results) - len(data_samples):]
        for data_sample, (_, result) in zip(data_samples, processed):
            if GT_BOX_PRED_INSTANCES in data_sample:
                result[GT_BOX_RESULT] = encode_gt_box_result(data_sample[GT_BOX_PRED_INSTANCES])

    def compute_metrics(self, results: list) -> dict:
        """Compute COCO AP against the validated ground truth."""
        self._build_ground_truth()
        self.img_ids = self._evaluated_image_ids(results)
        metrics = {}
        for metric in self.metrics:
            metrics.update(self._compute_one_metric(metric, results))

        predictions = [result for _, result in results]
        if any(GT_BOX_RESULT in result for result in predictions):
            class_names = self._category_names() if self.classwise else None
            metrics.update(evaluate_gt_box_masks(
                self._segm_coco_api, predictions, cat_ids=self.cat_ids, img_ids=self.img_ids,
                max_dets=self.proposal_nums, iou_thrs=self.iou_thrs,
                category_names=class_names))
        return metrics

    def _compute_one_metric(self, metric: str, results: list) -> dict:
        """Run mmdet's evaluation for one metric, against the segm ground
        truth for 'segm', and prefix its per-category keys with the
        metric's name."""
        all_metrics, bbox_coco_api = self.metrics, self._coco_api
        self.metrics = [metric]
        if metric == 'segm':
            self._coco_api = self._segm_coco_api
        try:
            metrics = super().compute_metrics(results)
        finally:
            self.metrics, self._coco_api = all_metrics, bbox_coco_api
        per_category_keys = {f'{name}_precision' for name in self._category_names()}
        return {f'{metric}_{key}' if key in per_category_keys else key: value
                for key, value in metrics.items()}

    def _evaluated_image_ids(self, results: list) -> list:
        """Return the ids of the images that have results, in first-seen order.

        Raises:
            ConfigError: when a result belongs to an image that is not in
                the annotation file.
        """
        evaluated = list(dict.fromkeys(ground_truth['img_id'] for ground_truth, _ in results))
        unknown = [image_id for image_id in evaluated if image_id not in self._coco_api.imgs]
        if unknown:
            raise ConfigError(f'{len(unknown)} evaluated images (ids {unknown[:10]}) are not '
                              f'in {self.gt_ann_file}; set the metric\'s ann_file to the '
                              'annotation file of the evaluated dataset')
        num_left_out = len(self._coco_api.imgs) - len(evaluated)
        if num_left_out:
            print_log(f'{num_left_out} images of {self.gt_ann_file} have no results and are '
                      'left out of the evaluation', logger='current', level=logging.WARNING)
        return evaluated

    def _category_names(self) -> list[str]:
        """Return the evaluated category names, in label order, as mmdet's
        per-category keys spell them."""
        return [self._coco_api.cats[category_id]['name'] for category_id in self.cat_ids]

    def _build_ground_truth(self) -> None:
        """Load the ground truth once, with the labels of the dataset metainfo."""
        if self._coco_api is not None:
            return
        meta = self.dataset_meta or {}
        annotations = load_coco_annotations(
            self.gt_ann_file, self.gt_image_dir, classes=meta.get('classes'),
            category_ids=meta.get(CATEGORY_IDS),
            on_bad_annotation=self.on_bad_annotation or meta.get(ON_BAD_ANNOTATION, 'error'),
            check_image_files=False)

        self.cat_ids = [category.id for category in annotations.categories.selected]
        self._coco_api, self._segm_coco_api = build_bbox_and_segm_ground_truth(annotations)
        print_log(f'{type(self).__name__}: ground truth from {self.gt_ann_file}: '
                  f'{len(self._coco_api.imgs)} images, {len(self._coco_api.anns)} '
                  f'annotations, category ids {self.cat_ids}', logger='current')
        num_box_only = _count_box_only(annotations)
        if num_box_only:
            print_log(f'{num_box_only} box-only annotations (no mask) are ignored in segm '
                      'evaluation (iscrowd=1) and counted in bbox evaluation',
                      logger='current')


def build_ground_truth_coco(annotations: CocoAnnotations, iou_type: str = 'bbox') -> COCO:
    """Build a COCO object from validated annotations, for one COCOeval
    `iouType`.

    Annotation ids are renumbered from 1 and every mask becomes compressed
    RLE. Placeholder regions are left out because they have no evaluated
    category; crowd and "ignore" regions become iscrowd=1. For 'segm',
    box-only annotations also become iscrowd=1, because their mask is only
    their box rectangle.

    Raises:
        ValueError: when `iou_type` is neither 'bbox' nor 'segm'.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f'iou_type must be one of {IOU_TYPES}, got {iou_type!r}')
    bbox_coco, segm_coco = build_bbox_and_segm_ground_truth(annotations)
    return segm_coco if iou_type == 'segm' else bbox_coco


def build_bbox_and_segm_ground_truth(annotations: CocoAnnotations) -> tuple[COCO, COCO]:
    """Build the bbox and the segm ground truth of `build_ground_truth_coco`
    in one pass, decoding each mask once."""
    images = [{'id': image.image_id, 'file_name': image.file_name,
               'width': image.width, 'height': image.height}
              for image in annotations.images]
    bbox_annotations = []
    segm_annotations = []
    for image in annotations.images:
        for record in image.instances:
            if record.label < 0:
                continue
            annotation = _coco_annotation(record, image, len(bbox_annotations) + 1)
            bbox_annotations.append(annotation)
            # pycocotools (2.0.11) ignores a ground truth only through
            # iscrowd, because COCOeval._prepare overwrites `ignore` with it.
            segm_annotations.append(dict(annotation, iscrowd=1) if record.mask_from_box
                                    else dict(annotation))
    categories = [{'id': category.id, 'name': category.name}
                  for category in annotations.categories.selected]
    return (_make_coco(images, bbox_annotations, categories),
            _make_coco(images, segm_annotations, categories))


def _count_box_only(annotations: CocoAnnotations) -> int:
    """Return how many evaluated, not otherwise ignored annotations are box-only."""
    return sum(record.mask_from_box and record.label >= 0 and record.ignore_reason is None
               for record in annotations.iter_instances())


def _coco_annotation(record: InstanceRecord, image: ImageRecord, annotation_id: int) -> dict:
    rle = instance_mask_to_rle(record.to_instance(), image.height, image.width)
    x1, y1, x2, y2 = record.box
    return {
        'id': annotation_id,
        'image_id': image.image_id,
        'category_id': record.category_id,
        'bbox': [x1, y1, x2 - x1, y2 - y1],
        'area': rle_area(rle),
        'iscrowd': int(record.ignore_reason is not None),
        'segmentation': rle,
    }


def _make_coco(images: list[dict], annotations: list[dict], categories: list[dict]) -> COCO:
    coco = COCO()
    coco.dataset = {'images': images, 'annotations': annotations, 'categories': categories}
    coco.createIndex()
    return coco
