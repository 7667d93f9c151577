"""Instance masks: polygons, RLE and mask files decoded to (H, W) bitmaps.

Polygons and RLE reaching these functions have passed
`annotation_checks`, so pycocotools only receives well-formed input.
"""
from typing import Union

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageOps

from ..errors import AnnotationError
from ..fields import MASK_PATH

# A COCO segmentation after loading: a list of polygon rings, or a
# compressed RLE dict with `size` and a string `counts`.
Segmentation = Union[list, dict]

# Pillow modes whose last channel is alpha.
_ALPHA_MODES = ('RGBA', 'LA', 'PA')


def box_to_polygon(box: list[float]) -> list[list[float]]:
    """Return the rectangle `[x1, y1, x2, y2]` as a one-ring polygon."""
    x1, y1, x2, y2 = box
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def segmentation_to_rle(segmentation: Segmentation, height: int,
                        width: int) -> dict:
    """Encode polygons or RLE as one compressed RLE dict with a str `counts`."""
    if isinstance(segmentation, list):
        # Several rings (an object split into parts) merge into one mask.
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation['counts'], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {'size': list(segmentation['size']),
               'counts': segmentation['counts'].encode('ascii')}
    return {'size': [int(value) for value in rle['size']],
            'counts': rle['counts'].decode('ascii')}


def read_mask_file(path: str, height: int, width: int) -> np.ndarray:
    """Read a mask image as a (H, W) uint8 array, 1 on the object.

    The object is every pixel with a nonzero palette index in a palette (P)
    image, whatever colour the palette gives that index, and every pixel
    with a nonzero colour channel in other images. An alpha channel must be
    fully opaque, and is then ignored. EXIF orientation is applied as for
    images.

    Raises:
        AnnotationError: when the file's size is not `width` x `height`, or
            when its alpha channel has a pixel below 255.
    """
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.size != (width, height):
            raise AnnotationError(
                f'mask file {path} is {image.size[0]}x{image.size[1]} pixels '
                f'but its image is {width}x{height}; a mask file must have '
                'the size of its image')
        mode = image.mode
        # A P image reads as its palette indices, not as colours.
        pixels = np.asarray(image)
    if mode in _ALPHA_MODES:
        _check_opaque(path, mode, pixels[..., -1])
        pixels = pixels[..., :-1]
    if pixels.ndim == 3:
        return pixels.any(axis=2).astype(np.uint8)
    return (pixels != 0).astype(np.uint8)


def _check_opaque(path: str, mode: str, alpha: np.ndarray) -> None:
    """Raise `AnnotationError` unless every alpha value is 255."""
    num_transparent = int((alpha < 255).sum())
    if num_transparent:
        # Transparency could mark the background or be left over from
        # drawing, so neither the colour nor the alpha can be trusted.
        raise AnnotationError(
            f'mask file {path} ({mode}) has {num_transparent} of {alpha.size} pixels '
            'with alpha below 255, so it is ambiguous whether colour or transparency '
            'marks the object; save the mask without an alpha channel, with nonzero '
            'pixels on the object')


def decode_instance_mask(instance: dict, height: int, width: int) -> np.ndarray:
    """Decode an instance's `mask` or `mask_path` into a (H, W) uint8 bitmap."""
    if MASK_PATH in instance:
        return read_mask_file(instance[MASK_PATH], height, width)
    rle = segmentation_to_rle(instance['mask'], height, width)
    return mask_utils.decode(_as_bytes_rle(rle))


def instance_mask_to_rle(instance: dict, height: int, width: int) -> dict:
    """Encode an instance's mask as compressed RLE with a str `counts`."""
    if MASK_PATH in instance:
        bitmap = read_mask_file(instance[MASK_PATH], height, width)
        rle = mask_utils.encode(np.asfortranarray(bitmap))
        return {'size': [int(value) for value in rle['size']],
                'counts': rle['counts'].decode('ascii')}
    return segmentation_to_rle(instance['mask'], height, width)


def rle_area(rle: dict) -> float:
    """Return the number of object pixels of a compressed RLE with str `counts`."""
    return float(mask_utils.area(_as_bytes_rle(rle)))


def rle_box(rle: dict) -> list[float]:
    """Return the tight `[x, y, width, height]` of a compressed RLE with str `counts`."""
    return [float(value) for value in mask_utils.toBbox(_as_bytes_rle(rle))]


def _as_bytes_rle(rle: dict) -> dict:
    return {'size': rle['size'], 'counts': rle['counts'].encode('ascii')}
