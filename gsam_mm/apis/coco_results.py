"""Inference results in the COCO results format that `COCO.loadRes` reads.

Each record carries both the box and the mask of a detection, so
pycocotools can evaluate either `iouType`. `loadRes` takes the area of a
record with a `bbox` from the box. The small, medium and large segm figures
therefore use box areas, but the overall segm AP does not depend on areas.
"""
import json
import os.path as osp
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pycocotools.mask as mask_utils
from mmengine.logging import print_log

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


def image_ids_from_annotations(image_paths: Sequence[str], ann_file: str) -> dict[str, int]:
    """Map image paths to the ids of an annotation file's images.

    An image matches the record whose `file_name` its path ends with, or
    failing that the one with the same base name.

    Raises:
        InputError: when an image matches no record or several by base name.
    """
    with open(ann_file) as file:
        records = json.load(file).get('images', [])
    by_file_name = {Path(record['file_name']).as_posix(): record['id'] for record in records}
    by_base_name: dict[str, list[int]] = {}
    for record in records:
        by_base_name.setdefault(osp.basename(record['file_name']), []).append(record['id'])

    image_ids = {}
    for path in image_paths:
        posix_path = Path(path).as_posix()
        suffix_matches = [image_id for file_name, image_id in by_file_name.items()
                          if posix_path == file_name or posix_path.endswith('/' + file_name)]
        candidates = suffix_matches or by_base_name.get(osp.basename(path), [])
        if len(candidates) != 1:
            found = 'no image' if not candidates else f'{len(candidates)} images {candidates}'
            raise InputError(f'{path} matches {found} of {ann_file} by file name; pass only '
                             'images of the annotation file, or leave out --ann-file to '
                             'number the images 1, 2, ...')
        image_ids[path] = candidates[0]
    return image_ids


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
