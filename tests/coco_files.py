"""Tiny COCO files with real images, written for tests."""
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

CAT_DOG = [{'id': 1, 'name': 'cat'}, {'id': 2, 'name': 'dog'}]
BACKGROUND_GRAY = 40
OBJECT_RGB = (200, 120, 60)


def draw_boxes(width: int, height: int, boxes: list) -> np.ndarray:
    """Return a (H, W, 3) uint8 image, gray, with each `[x, y, w, h]` box filled."""
    pixels = np.full((height, width, 3), BACKGROUND_GRAY, dtype=np.uint8)
    for x, y, box_width, box_height in boxes:
        if not all(math.isfinite(value) for value in (x, y, box_width, box_height)):
            continue
        x1, y1 = max(int(x), 0), max(int(y), 0)
        x2, y2 = min(int(x + box_width), width), min(int(y + box_height), height)
        if x2 > x1 and y2 > y1:
            pixels[y1:y2, x1:x2] = OBJECT_RGB
    return pixels


def write_coco(folder: Path, images: list, annotations: list,
               categories: Optional[list] = CAT_DOG, *, missing_files: tuple = (),
               name: str = 'annotations.json') -> Path:
    """Write a COCO file and draw its images (PNG pixels, named as given).

    Args:
        categories: the `categories` list; None leaves the key out.
        missing_files: file names that are not drawn.

    Returns:
        The annotation file path. Images and mask files live in `folder`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    boxes_by_image = {}
    for annotation in annotations:
        if isinstance(annotation.get('bbox'), list):
            boxes_by_image.setdefault(annotation.get('image_id'), []).append(annotation['bbox'])
    for image in images:
        if image['file_name'] in missing_files:
            continue
        width, height = image.get('width', 64), image.get('height', 48)
        pixels = draw_boxes(width, height, boxes_by_image.get(image['id'], []))
        path = folder / image['file_name']
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format='PNG')

    content = {'images': images, 'annotations': annotations}
    if categories is not None:
        content['categories'] = categories
    ann_file = folder / name
    ann_file.write_text(json.dumps(content))
    return ann_file


def square(x: float, y: float, side: float) -> list:
    """Return a polygon ring of the square with top-left corner (x, y)."""
    return [x, y, x + side, y, x + side, y + side, x, y + side]


def annotation(annotation_id, image_id, category_id, bbox, **fields) -> dict:
    """Return an annotation record with `iscrowd=0` unless given."""
    record = {'id': annotation_id, 'image_id': image_id, 'category_id': category_id,
              'bbox': bbox, 'iscrowd': 0}
    record.update(fields)
    return record


def save_rotated_jpeg(path: Path, width: int, height: int) -> None:
    """Write a `width` x `height` JPEG (as stored) whose EXIF orientation 6
    displays it rotated 90 degrees clockwise, so `height` x `width`."""
    image = Image.fromarray(draw_boxes(width, height, [[2, 2, width // 4, height // 4]]))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())
