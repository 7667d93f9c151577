"""Pipeline steps that read images and instance annotations from disk.

Shape letters: N instances, H and W the image height and width.
"""
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS
from mmdet.structures.mask import BitmapMasks

from ...errors import AnnotationError
from ...fields import APPLY_EXIF
from ..images import read_rgb_image
from ..masks import decode_instance_mask


@TRANSFORMS.register_module()
class LoadImageRGB(BaseTransform):
    """Read an image with Pillow as uint8 pixels in RGB channel order.

    EXIF orientation is applied unless the data info's `apply_exif` is
    False (the annotation file's sizes are those of the stored pixels).
    Gray, palette and RGBA images become three channels (alpha dropped); 16-bit, 32-bit and float gray images are
    scaled so that their maximum becomes 255 (see `images.read_rgb_image`).
    The channels are RGB, not the BGR that mmcv's `LoadImageFromFile` gives,
    so the model's data preprocessor must use `bgr_to_rgb=False`.

    When the data info carries `height` and `width` (from the annotation
    file) they must equal the decoded size, otherwise the annotations would
    not fit the pixels.

    Required Keys:

    - img_path
    - height (optional)
    - width (optional)
    - apply_exif (optional, default True)

    Added Keys:

    - img (np.uint8, (H, W, 3), RGB)
    - img_shape
    - ori_shape
    """

    def transform(self, results: dict) -> dict:
        """Read `results['img_path']` and add the pixels and their shape."""
        path = results['img_path']
        apply_exif = results.get(APPLY_EXIF, True)
        pixels = read_rgb_image(path, apply_exif=apply_exif)
        height, width = pixels.shape[:2]
        expected = (results.get('height'), results.get('width'))
        if None not in expected and expected != (height, width):
            orientation = 'after EXIF orientation' if apply_exif else 'as stored'
            raise AnnotationError(
                f'image {results.get("img_id")!r} ({path}) is {width}x{height} pixels '
                f'{orientation}, but the annotation file gives '
                f'width={expected[1]}, height={expected[0]}; fix the width and height '
                'in the file (or remove them to read them from the image)')
        results['img'] = pixels
        results['img_shape'] = (height, width)
        results['ori_shape'] = (height, width)
        return results


@TRANSFORMS.register_module()
class LoadGroundingAnnotations(LoadAnnotations):
    """Load boxes, labels, ignore flags and bitmap masks of every instance.

    Masks come from polygons (several rings merge into one mask),
    compressed or uncompressed RLE, or a mask image named by the instance's
    `mask_path` (nonzero pixels belong to the object). Unlike mmdet's
    `LoadAnnotations`, no instance is silently turned into an ignore region:
    `CocoWithMasksDataset` has already validated every mask. An image
    without instances gets `gt_bboxes` of shape (0, 4) and `gt_masks` of
    shape (0, H, W).

    Required Keys:

    - ori_shape
    - instances

      - bbox
      - bbox_label
      - ignore_flag
      - mask or mask_path (only with `with_mask=True`)

    Added Keys:

    - gt_bboxes (HorizontalBoxes, (N, 4), float32)
    - gt_bboxes_labels (np.int64, (N,))
    - gt_ignore_flags (bool, (N,))
    - gt_masks (BitmapMasks, (N, H, W); only with `with_mask=True`)

    Args:
        with_mask: whether to load masks.
        **kwargs: other arguments of mmdet's `LoadAnnotations` (with_bbox,
            with_label, box_type). Masks are always decoded to bitmaps, so
            `poly2mask=False` is rejected.
    """

    def __init__(self, with_mask: bool = True, **kwargs) -> None:
        if kwargs.get('with_seg'):
            raise ValueError('LoadGroundingAnnotations does not load semantic '
                             'segmentation maps; leave with_seg unset')
        if kwargs.get('poly2mask') is False:
            raise ValueError('LoadGroundingAnnotations always decodes masks to bitmaps, so '
                             'poly2mask=False is invalid; leave poly2mask unset or True')
        super().__init__(with_mask=with_mask, **kwargs)

    def _load_masks(self, results: dict) -> None:
        """Decode every instance's mask at the original image size."""
        height, width = results['ori_shape']
        bitmaps = [decode_instance_mask(instance, height, width)
                   for instance in results.get('instances', [])]
        results['gt_masks'] = BitmapMasks(_stack_or_empty(bitmaps, height, width),
                                          height, width)


def _stack_or_empty(bitmaps: list, height: int, width: int) -> np.ndarray:
    """Stack (H, W) bitmaps into (N, H, W); N may be 0."""
    if not bitmaps:
        return np.zeros((0, height, width), dtype=np.uint8)
    return np.stack(bitmaps).astype(np.uint8, copy=False)
