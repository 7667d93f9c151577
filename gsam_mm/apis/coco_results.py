"""Inference results in the COCO results format that `COCO.loadRes` reads.

Each record carries both the box and the mask of a detection, so
pycocotools can evaluate either `iouType`. `loadRes` takes the area of a
record with a `bbox` from the box. The small, medium and large segm figures
therefore use box areas, but the overall segm AP does not depend on areas.
"""
import json
import logging
import os.path as osp
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pycocotools.mask as mask_utils
from mmengine.logging import print_log

from ..datasets.coco_file import match_header_size
from ..datasets.images import read_image_header
from ..errors import InputError
from .inferencer import Detections, PromptCategories

# Written next to the results: what `category_id` means in this run.
CATEGORY_ID_MEANING = {
    True: 'the COCO category id of the training dataset',
    False: 'the 1-based position of the phrase in the text prompt',
}


def encode_mask(mask: np.ndarray) -> dict:
    """Encode a (H, W) bool mask as compressed RLE with a str `counts`."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(value) for value in rle['size']],
            'counts': rle['counts'].decode('ascii')}


def detections_to_coco(detections: Detections, image_id: int) -> list[dict]:
    """Return one COCO result record (box, RLE mask, score) per detection."""
    records = []
    for box, score, label, mask in zip(detections.bboxes, detections.scores,
                                       detections.labels, detections.masks):
        x1, y1, x2, y2 = (float(value) for value in box)
        records.append({
            'image_id': image_id,
            'category_id': detections.categories.category_ids[int(label)],
            'bbox': [x1, y1, x2 - x1, y2 - y1],
            'score': float(score),
            'segmentation': encode_mask(mask),
        })
    return records


@dataclass(frozen=True)
class AnnotatedImage:
    """The image record of an annotation file that an image path matches.

    Attributes:
        image_id: the record's `id`.
        apply_exif: whether to apply the EXIF orientation when reading the
            file, decided as `load_coco_annotations` decides it for training.
    """

    image_id: Any
    apply_exif: bool


def match_annotation_images(image_paths: Sequence[str],
                            ann_file: str) -> dict[str, AnnotatedImage]:
    """Match image paths to the image records of an annotation file, and
    decide how to read each image.

    The EXIF orientation is applied unless the record's width and height
    are those of the stored pixels, as in training. A record whose size
    fits neither orientation (which the dataset rejects) is read with EXIF
    orientation, and one warning counts such images.

    Raises:
        InputError: as `image_ids_from_annotations`.
    """
    matches = {}
    size_problems = []
    for path, record in _match_records(image_paths, ann_file).items():
        apply_exif, size_problem = _exif_rule(path, record)
        if size_problem:
            size_problems.append(f'{path}: {size_problem}')
        matches[path] = AnnotatedImage(record['id'], apply_exif)

    if size_problems:
        print_log(f'{len(size_problems)} images do not have the width and height of their '
                  f'record in {ann_file}, so they are read with EXIF orientation applied; '
                  f'first: {size_problems[0]}', logger='current', level=logging.WARNING)
    return matches


def image_ids_from_annotations(image_paths: Sequence[str], ann_file: str) -> dict[str, Any]:
    """Map image paths to the ids of an annotation file's images.

    An image matches the record whose `file_name` its path ends with, or
    failing that the one with the same base name.

    Raises:
        InputError: when an image matches no record or several by base name,
            or several images match one record.
    """
    return {path: record['id']
            for path, record in _match_records(image_paths, ann_file).items()}


def _match_records(image_paths: Sequence[str], ann_file: str) -> dict[str, dict]:
    """Return the image record that each path matches (see
    `image_ids_from_annotations`)."""
    with open(ann_file) as file:
        records = json.load(file).get('images', [])
    by_file_name = {Path(record['file_name']).as_posix(): record for record in records}
    by_base_name: dict[str, list[dict]] = {}
    for record in records:
        by_base_name.setdefault(osp.basename(record['file_name']), []).append(record)

    matches = {}
    for path in image_paths:
        posix_path = Path(path).as_posix()
        suffix_matches = [record for file_name, record in by_file_name.items()
                          if posix_path == file_name or posix_path.endswith('/' + file_name)]
        candidates = suffix_matches or by_base_name.get(osp.basename(path), [])
        if len(candidates) != 1:
            found = ('no image' if not candidates else
                     f'{len(candidates)} images {[record["id"] for record in candidates]}')
            raise InputError(f'{path} matches {found} of {ann_file} by file name; pass only '
                             'images of the annotation file, or leave out --ann-file to '
                             'number the images 1, 2, ...')
        matches[path] = candidates[0]

    paths_by_record: dict[Any, list[str]] = {}
    for path, record in matches.items():
        paths_by_record.setdefault(record['id'], []).append(path)
    shared = {image_id: paths for image_id, paths in paths_by_record.items() if len(paths) > 1}
    if shared:
        image_id, paths = next(iter(shared.items()))
        raise InputError(f'{len(shared)} images of {ann_file} are matched by several input '
                         f'files, e.g. image id {image_id} by {paths}; pass one file per image, '
                         'for example the image folder itself rather than a folder above it')
    return matches


def _exif_rule(path: str, record: dict) -> tuple[bool, Optional[str]]:
    """Return whether to apply the EXIF orientation to the image file of
    `record`, and a problem text when its size fits neither orientation."""
    width, height = record.get('width'), record.get('height')
    if width is None or height is None:
        return True, None
    return match_header_size(width, height, read_image_header(path))


def run_info(categories: PromptCategories, images: Sequence[dict],
             ann_file: Optional[str]) -> dict:
    """Return what the image and category ids of a results file mean.

    Args:
        categories: the prompt's categories.
        images: per image `id`, `file_name`, `width` and `height`.
        ann_file: the annotation file the image ids come from, if any.
    """
    return {
        'category_id': CATEGORY_ID_MEANING[categories.from_dataset],
        'image_id': (f'the image id in {ann_file}' if ann_file
                     else 'the 1-based position of the image in this run'),
        'categories': [{'id': category_id, 'name': name, 'prompt_text': text}
                       for category_id, name, text in zip(categories.category_ids,
                                                          categories.names, categories.texts)],
        'images': list(images),
    }


def write_json(path: str, content) -> None:
    """Write JSON to `path` and log where."""
    with open(path, 'w') as file:
        json.dump(content, file)
    print_log(f'Wrote {path}', logger='current')
