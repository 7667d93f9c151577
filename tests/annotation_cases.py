"""Annotation files that broke other fine-tuning tools, one per known bug
report, rebuilt as tiny COCO files with real images.

`write_case(folder, name)` writes case `name` and returns its annotation file.
"""
from pathlib import Path

import numpy as np
from PIL import Image

from .coco_files import CAT_DOG, annotation, draw_boxes, square, write_coco

IMAGE_100 = {'id': 1, 'file_name': 'a.jpg', 'width': 100, 'height': 100}
# Compressed RLE of a 20x10 block at x=8, y=4 on a 64x48 image.
BLOCK_RLE = {'size': [48, 64], 'counts': 'T<:V10000000000000000000000000000000000000le1'}
LONG_CATEGORY_NAMES = [f'category number {index} with a rather long descriptive name'
                       for index in range(1, 121)]


def polygon_annotation(annotation_id, image_id, category_id, x, y, side, **fields) -> dict:
    return annotation(annotation_id, image_id, category_id, [x, y, side, side],
                      segmentation=[square(x, y, side)], **fields)


def _c01():
    return [IMAGE_100], [annotation(11, 1, 1, [10, 10, 20, 1],
                                    segmentation=[[10, 10, 30, 11]])], CAT_DOG


def _c02():
    return [IMAGE_100], [polygon_annotation(1, 1, 1, 0, 0, 8),
                         annotation(2, 1, 1, [10, 10, 5, 5],
                                    segmentation=[[10, 10, 15, 15]])], CAT_DOG


def _c03():
    return [IMAGE_100], [annotation(5, 1, 1, [5, 5, 35, 35],
                                    segmentation=[[5, 5, 40, 40, 22]])], CAT_DOG


def _c04():
    image = {'id': 1, 'file_name': 'small.png', 'width': 5, 'height': 4}
    return [image], [annotation(3, 1, 1, [1, 0, 3, 4],
                                segmentation={'size': [4, 5], 'counts': [6, 3, 1, 3, 7]})], CAT_DOG


def _c05():
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    return [image], [annotation(1, 1, 2, [8, 4, 20, 10], segmentation=BLOCK_RLE)], CAT_DOG


def _c06():
    return [IMAGE_100], [
        annotation(1, 1, 1, [150, 20, 30, 30]),
        annotation(2, 1, 1, [90, 90, 50, 50]),
        annotation(3, 1, 1, [10, 10, 0, 5]),
        annotation(4, 1, 1, [10, 10, -4, 5]),
        polygon_annotation(5, 1, 2, 20, 20, 30)], CAT_DOG


def _c07():
    images = [{'id': 5, 'file_name': 'crowd.jpg', 'width': 64, 'height': 48},
              {'id': 6, 'file_name': 'plain.jpg', 'width': 64, 'height': 48}]
    return images, [annotation(1, 5, 1, [8, 4, 20, 10], segmentation=BLOCK_RLE, iscrowd=1),
                    polygon_annotation(2, 6, 1, 4, 4, 16)], CAT_DOG


def _c08():
    images = [{'id': 7, 'file_name': 'bg_a.jpg', 'width': 64, 'height': 64},
              {'id': 7, 'file_name': 'bg_b.jpg', 'width': 64, 'height': 64}]
    return images, [], CAT_DOG


def _c09():
    images = [IMAGE_100, {'id': 2, 'file_name': 'empty.jpg', 'width': 100, 'height': 100}]
    return images, [polygon_annotation(1, 1, 1, 10, 10, 30)], CAT_DOG


def _c10():
    images = [{'id': 0, 'file_name': 'a.jpg', 'width': 100, 'height': 100},
              {'id': 1, 'file_name': 'b.jpg', 'width': 100, 'height': 100}]
    return images, [polygon_annotation(0, 0, 1, 1, 1, 20),
                    polygon_annotation(1, 1, 1, 2, 2, 30)], [{'id': 1, 'name': 'cell'}]


def _c11():
    images = [IMAGE_100, {'id': 2, 'file_name': 'b.jpg', 'width': 100, 'height': 100}]
    return images, [polygon_annotation(4, 1, 1, 1, 1, 5),
                    polygon_annotation(4, 2, 1, 2, 2, 5)], CAT_DOG


def _c12():
    categories = [{'id': 3, 'name': 'apple'}, {'id': 7, 'name': 'pear'},
                  {'id': 90, 'name': 'plum'}]
    return [IMAGE_100], [polygon_annotation(1, 1, 3, 1, 1, 20),
                         polygon_annotation(2, 1, 7, 30, 30, 20),
                         polygon_annotation(3, 1, 90, 60, 60, 20)], categories


def _c13():
    return [IMAGE_100], [polygon_annotation(1, 1, 4, 1, 1, 20),
                         polygon_annotation(2, 1, 9, 30, 30, 20)], None


def _c14():
    names = ['car', 'taxi', 'potted_plant', 'Traffic.Light', 'car']
    categories = [{'id': index + 1, 'name': name} for index, name in enumerate(names)]
    return [IMAGE_100], [polygon_annotation(1, 1, 3, 1, 1, 20)], categories


def _c15():
    categories = [{'id': index + 1, 'name': name}
                  for index, name in enumerate(LONG_CATEGORY_NAMES)]
    return [IMAGE_100], [polygon_annotation(1, 1, 117, 1, 1, 20)], categories


def _c16():
    images = [{'id': index + 1, 'file_name': name, 'width': 40, 'height': 30}
              for index, name in enumerate(['gray.png', 'rgba.png', 'deep16.png'])]
    return images, [polygon_annotation(index + 1, index + 1, 1, 5, 5, 10)
                    for index in range(3)], CAT_DOG


def _c17():
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    return [image], [annotation(1, 1, 2, [8, 4, 20, 10], mask_path='masks/a_1.png')], CAT_DOG


def _c18():
    images = [IMAGE_100, {'id': 2, 'file_name': 'not_there.jpg', 'width': 100, 'height': 100}]
    return images, [polygon_annotation(1, 1, 1, 1, 1, 20),
                    polygon_annotation(2, 2, 1, 1, 1, 20)], CAT_DOG


def _c19():
    return [IMAGE_100], [polygon_annotation(1, 1, 42, 1, 1, 20),
                         polygon_annotation(2, 99, 1, 1, 1, 20)], CAT_DOG


def _c20():
    image = {'id': 1, 'file_name': 'many.jpg', 'width': 200, 'height': 150}
    annotations = [polygon_annotation(index + 1, 1, 1 + index % 2, (index % 20) * 10,
                                      (index // 20) * 10, 8)
                   for index in range(300)]
    return [image], annotations, CAT_DOG


CASES = {
    'c01_polygon_two_points': _c01,
    'c02_polygon_four_numbers_and_square': _c02,
    'c03_polygon_odd_count': _c03,
    'c04_uncompressed_rle': _c04,
    'c05_compressed_rle': _c05,
    'c06_boxes_outside_or_degenerate': _c06,
    'c07_crowd_only_image': _c07,
    'c08_duplicate_image_ids': _c08,
    'c09_image_without_annotations': _c09,
    'c10_annotation_ids_from_zero': _c10,
    'c11_duplicate_annotation_ids': _c11,
    'c12_sparse_category_ids': _c12,
    'c13_no_categories': _c13,
    'c14_category_names': _c14,
    'c15_prompt_longer_than_256_tokens': _c15,
    'c16_image_modes': _c16,
    'c17_mask_path': _c17,
    'c18_missing_image_file': _c18,
    'c19_unknown_category_and_image': _c19,
    'c20_three_hundred_instances': _c20,
}


def write_case(folder: Path, name: str) -> Path:
    """Write case `name` (a key of `CASES`) into `folder`; return its annotation file."""
    images, annotations, categories = CASES[name]()
    ann_file = write_coco(folder, images, annotations, categories,
                          missing_files=('not_there.jpg',))
    if name == 'c16_image_modes':
        _rewrite_image_modes(folder)
    if name == 'c17_mask_path':
        mask = np.zeros((48, 64), dtype=np.uint8)
        mask[4:14, 8:28] = 255
        (folder / 'masks').mkdir(exist_ok=True)
        Image.fromarray(mask).save(folder / 'masks' / 'a_1.png')
    return ann_file


def _rewrite_image_modes(folder: Path) -> None:
    """Save the c16 images as 8-bit gray, RGBA and 16-bit gray (values up to 3200)."""
    pixels = draw_boxes(40, 30, [[5, 5, 10, 10]])
    Image.fromarray(pixels[..., 0]).save(folder / 'gray.png')
    alpha = np.full((30, 40, 1), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([pixels, alpha], axis=2)).save(folder / 'rgba.png')
    Image.fromarray(pixels[..., 0].astype(np.uint16) * 16).save(folder / 'deep16.png')
