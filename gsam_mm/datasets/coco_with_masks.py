"""COCO instance-segmentation dataset whose every record is validated at build time."""
import logging
from typing import Any, List

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.logging import print_log

from ..errors import AnnotationError
from ..fields import (APPLY_EXIF, CATEGORY_IDS, CATEGORY_TEXTS, ON_BAD_ANNOTATION,
                      PROMPT_TEXTS)
from .coco_file import CocoAnnotations, check_on_bad_annotation, load_coco_annotations
from .load_summary import log_load_summary


@DATASETS.register_module()
class CocoWithMasksDataset(CocoDataset):
    """COCO boxes and masks with category names as Grounding DINO prompt text.

    The whole annotation file is validated when the dataset is built,
    before training starts: every image file must exist and every record
    must be well formed (see `coco_file.load_coco_annotations` for the
    rules). Problems are reported together in one `AnnotationError`.

    Categories and labels:
        Label k is the k-th category of the file's `categories` list, with
        placeholder categories (`_background_`, `__ignore__`) left out;
        their annotations become ignore regions with label -1. With
        `metainfo=dict(classes=(...))` only the named categories are kept,
        in that order, and annotations of other categories are dropped
        (counted in the log). A file without a `categories` list gets its
        ids from the annotations (ascending); `classes` then names them.

    After loading, `metainfo` contains three tuples in label order:
    `classes` (category names as written in the file), `category_texts`
    (prompt texts) and `cat_ids` (COCO category ids, which the metric uses
    to write results back), and `on_bad_annotation`, which the metric
    follows unless its config sets its own.

    Each data info has `img_path`, `img_id`, `height`, `width`,
    `apply_exif` (False when the file's sizes ignore the EXIF rotation),
    `text` (the prompt texts) and `instances`. Each instance has:

    - `bbox`: [x1, y1, x2, y2], clipped to the image.
    - `bbox_label`: the label, -1 for placeholder regions.
    - `ignore_flag`: 1 for crowd, "ignore" and placeholder regions.
    - `mask` (polygons or compressed RLE) or `mask_path` (absolute path of
      a mask image).

    Args:
        on_bad_annotation: 'error' (default) raises one `AnnotationError`
            listing every invalid record. 'skip' drops invalid images (with
            their annotations) and invalid annotations, and logs one
            warning that counts and lists them. Invalid categories raise in
            both modes.
        *args, **kwargs: arguments of mmdet's `CocoDataset`. Image paths
            are `data_prefix['img']` joined with each `file_name`;
            `filter_cfg=dict(filter_empty_gt=True)` drops images without
            annotations from training (counted in the log).
    """

    # Categories come from the annotation file, never from COCO's defaults.
    METAINFO: dict = {}

    def __init__(self, *args: Any, on_bad_annotation: str = 'error', **kwargs: Any) -> None:
        check_on_bad_annotation(on_bad_annotation)  # before a lazy_init delays loading
        self.on_bad_annotation = on_bad_annotation
        super().__init__(*args, **kwargs)

    @property
    def image_dir(self) -> str:
        """Folder that image file names and mask paths are relative to."""
        return self.data_prefix.get('img', self.data_prefix.get('img_path', ''))

    def load_data_list(self) -> List[dict]:
        """Load and validate the annotation file and set the category metainfo."""
        annotations = load_coco_annotations(
            self.ann_file, self.image_dir, classes=self._metainfo.get('classes'),
            on_bad_annotation=self.on_bad_annotation)
        log_load_summary(annotations)
        empty_reason = None if self.test_mode else annotations.nothing_to_train_on()
        if empty_reason:
            raise AnnotationError(empty_reason)
        self._set_category_metainfo(annotations)
        return [self._to_data_info(image) for image in annotations.images]

    def _set_category_metainfo(self, annotations: CocoAnnotations) -> None:
        categories = annotations.categories.selected
        self._metainfo['classes'] = tuple(category.name for category in categories)
        self._metainfo[CATEGORY_TEXTS] = tuple(category.text for category in categories)
        self._metainfo[CATEGORY_IDS] = tuple(category.id for category in categories)
        self._metainfo[ON_BAD_ANNOTATION] = self.on_bad_annotation
        # mmdet's CocoDataset API exposes these two as attributes.
        self.cat_ids = list(self._metainfo[CATEGORY_IDS])
        self.cat2label = {category_id: label for label, category_id in enumerate(self.cat_ids)}

    def _to_data_info(self, image) -> dict:
        return {
            'img_path': image.path,
            'img_id': image.image_id,
            'height': image.height,
            'width': image.width,
            APPLY_EXIF: image.apply_exif,
            PROMPT_TEXTS: self._metainfo[CATEGORY_TEXTS],
            'instances': [record.to_instance() for record in image.instances],
        }

    def filter_data(self) -> List[dict]:
        """Apply `filter_cfg` (`filter_empty_gt`, `min_size`) and log what it drops.

        Unlike mmdet's filter, an image counts as empty only when it has no
        instance at all. An image whose only instances are ignore regions
        is kept.
        """
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)

        kept_infos = []
        num_empty = 0
        num_small = 0
        for data_info in self.data_list:
            if filter_empty_gt and not data_info['instances']:
                num_empty += 1
            elif min(data_info['width'], data_info['height']) < min_size:
                num_small += 1
            else:
                kept_infos.append(data_info)

        if num_empty:
            print_log(f'{self.ann_file}: filter_cfg.filter_empty_gt dropped {num_empty} '
                      'images without annotations (negative images); set it to False '
                      'to train on them', logger='current', level=logging.WARNING)
        if num_small:
            print_log(f'{self.ann_file}: filter_cfg.min_size={min_size} dropped '
                      f'{num_small} images whose shorter side is smaller',
                      logger='current', level=logging.WARNING)
        return kept_infos

    def get_cat_ids(self, idx: int) -> List[int]:
        """Return the labels of the image's instances, placeholder regions excluded."""
        instances = self.get_data_info(idx)['instances']
        return [instance['bbox_label'] for instance in instances if instance['bbox_label'] >= 0]
