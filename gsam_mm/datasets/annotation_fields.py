"""Parse the mask and the box of one COCO annotation.

Each parser returns the converted value together with a list of problem
texts; a value is only returned when its list is empty.
"""
import os.path as osp
from typing import Any, Optional

from PIL import UnidentifiedImageError

from ..fields import MASK_PATH
from .annotation_checks import check_box, check_polygons, check_rle, clip_box, is_number
from .images import read_image_size
from .masks import Segmentation, rle_box, segmentation_to_rle


def parse_mask(raw: dict, image_width: int, image_height: int,
               img_dir: str) -> tuple[Optional[Segmentation], Optional[str], list[str]]:
    """Check the annotation's segmentation or mask file.

    Returns:
        The segmentation (polygons, or RLE converted to compressed form),
        the absolute mask file path, and the problem texts.
    """
    segmentation = raw.get('segmentation')
    mask_path = raw.get(MASK_PATH)
    if segmentation and mask_path:
        return None, None, ['has both "segmentation" and "mask_path"; give only one']
    if mask_path is not None:
        return (None, *_check_mask_path(mask_path, image_width, image_height, img_dir))
    if segmentation is None or segmentation == []:
        return None, None, []

    if isinstance(segmentation, list):
        if all(is_number(value) for value in segmentation):
            return None, None, ['segmentation is a flat list of numbers; a polygon '
                                'segmentation is a list of rings: [[x1, y1, x2, y2, ...]]']
        messages = check_polygons(segmentation, image_width, image_height)
        return (None if messages else segmentation), None, messages
    if isinstance(segmentation, dict):
        messages = check_rle(segmentation, image_height, image_width)
        if messages:
            return None, None, messages
        return segmentation_to_rle(segmentation, image_height, image_width), None, []
    return None, None, [f'segmentation of type {type(segmentation).__name__} is invalid; '
                        'expected a list of polygon rings or an RLE object']


def _check_mask_path(mask_path: Any, image_width: int, image_height: int,
                     img_dir: str) -> tuple[Optional[str], list[str]]:
    """Check that a mask file exists and has the image's size (header only)."""
    if not isinstance(mask_path, str) or not mask_path:
        return None, [f'mask_path {mask_path!r} is invalid; expected a file path '
                      'relative to the image folder']
    path = osp.join(img_dir, mask_path)
    if not osp.isfile(path):
        return None, [f'mask file not found: {path} (mask_path is resolved against '
                      f'the image folder {img_dir!r})']
    try:
        width, height = read_image_size(path)
    except (OSError, UnidentifiedImageError) as err:
        return None, [f'cannot read the mask file {path}: {err}']
    if (width, height) != (image_width, image_height):
        return None, [f'mask file {path} is {width}x{height} pixels but the image is '
                      f'{image_width}x{image_height}; a mask file must have the size '
                      'of its image']
    return osp.abspath(path), []


def parse_box(raw: dict, mask: Optional[Segmentation], image_width: int,
              image_height: int) -> tuple[Optional[list[float]], bool, bool, list[str]]:
    """Check the box and clip it to the image.

    Returns:
        The clipped `[x1, y1, x2, y2]` box, whether clipping changed it,
        whether it was computed from the mask, and the problem texts.
    """
    bbox = raw.get('bbox')
    box_from_mask = bbox is None and mask is not None
    if bbox is None:
        if mask is None:
            return None, False, False, ['has no "bbox" and no polygon or RLE mask to '
                                        'compute one from']
        bbox = _box_of_segmentation(mask)

    messages = check_box(bbox)
    if messages:
        return None, False, box_from_mask, messages
    box = clip_box(bbox, image_width, image_height)
    if box is None:
        return None, False, box_from_mask, [
            f'bbox {list(bbox)} lies entirely outside the {image_width}x{image_height} '
            'image; a box must overlap the image']
    x, y, width, height = bbox
    clipped = box != [float(x), float(y), float(x + width), float(y + height)]
    return box, clipped, box_from_mask, []


def _box_of_segmentation(mask: Segmentation) -> list[float]:
    """Return the tight `[x, y, width, height]` of a checked mask."""
    if isinstance(mask, list):
        xs = [value for ring in mask for value in ring[0::2]]
        ys = [value for ring in mask for value in ring[1::2]]
        return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    return rle_box(mask)
