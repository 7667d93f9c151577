"""LoadImageRGB, LoadGroundingAnnotations, and mmdet's Resize + Pad on their output."""
import numpy as np
import pytest
from mmdet.registry import TRANSFORMS
from PIL import Image

from gsam_mm.errors import AnnotationError


def load_image(path, **data_info) -> dict:
    transform = TRANSFORMS.build(dict(type='LoadImageRGB'))
    return transform(dict(img_path=str(path), **data_info))


def test_load_image_adds_documented_keys(tmp_path, coco):
    path = tmp_path / 'a.png'
    Image.fromarray(coco.draw_boxes(40, 30, [[5, 5, 10, 10]])).save(path)

    results = load_image(path)

    assert set(results) == {'img_path', 'img', 'img_shape', 'ori_shape'}
    assert results['img'].shape == (30, 40, 3)
    assert results['img'].dtype == np.uint8
    assert results['img_shape'] == (30, 40)
    assert results['ori_shape'] == (30, 40)
    # RGB order: the object color (200, 120, 60) is not reversed.
    assert results['img'][10, 10].tolist() == list(coco.OBJECT_RGB)


def test_gray_image_becomes_three_channels(tmp_path, coco):
    path = tmp_path / 'gray.png'
    Image.fromarray(coco.draw_boxes(40, 30, [[5, 5, 10, 10]])[..., 0]).save(path)

    pixels = load_image(path)['img']

    assert pixels.shape == (30, 40, 3)
    assert pixels[10, 10].tolist() == [200, 200, 200]
    assert pixels[0, 0].tolist() == [40, 40, 40]


def test_rgba_image_drops_alpha(tmp_path, coco):
    path = tmp_path / 'rgba.png'
    rgb = coco.draw_boxes(40, 30, [[5, 5, 10, 10]])
    alpha = np.full((30, 40, 1), 128, dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2)).save(path)

    pixels = load_image(path)['img']

    assert pixels.shape == (30, 40, 3)
    assert pixels[10, 10].tolist() == list(coco.OBJECT_RGB)


def test_16_bit_image_rescaled(tmp_path, coco):
    path = tmp_path / 'deep16.png'
    deep = coco.draw_boxes(40, 30, [[5, 5, 10, 10]])[..., 0].astype(np.uint16) * 16
    Image.fromarray(deep).save(path)

    pixels = load_image(path)['img']

    assert pixels.dtype == np.uint8
    # Object 3200 is the maximum and maps to 255; background 640 maps to
    # round(640 * 255 / 3200) = 51. Wrapping would give 3200 % 256 = 128.
    assert pixels[10, 10].tolist() == [255, 255, 255]
    assert pixels[0, 0].tolist() == [51, 51, 51]


def test_exif_orientation_applied_once(tmp_path):
    path = tmp_path / 'rotated.jpg'
    stored = np.zeros((30, 40, 3), dtype=np.uint8)
    stored[0:10, 0:10] = 255  # top-left corner as stored
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    image.save(path, exif=exif.tobytes(), quality=95)

    results = load_image(path, height=40, width=30)

    pixels = results['img']
    assert pixels.shape == (40, 30, 3)
    assert results['ori_shape'] == (40, 30)
    # Rotating clockwise moves the stored top-left corner to the top-right.
    assert pixels[2:8, 22:28].min() > 200
    assert pixels[2:8, 2:8].max() < 50


def test_size_mismatch_with_annotation_file(tmp_path, coco):
    path = tmp_path / 'a.png'
    Image.fromarray(coco.draw_boxes(40, 30, [])).save(path)

    with pytest.raises(AnnotationError, match='40x30 pixels .* width=50, height=30'):
        load_image(path, img_id=3, height=30, width=50)


def annotation_results(instances, height=20, width=30) -> dict:
    return {'ori_shape': (height, width), 'height': height, 'width': width,
            'instances': instances}


def test_load_annotations_adds_documented_keys():
    instances = [{'bbox': [2.0, 3.0, 12.0, 13.0], 'bbox_label': 1, 'ignore_flag': 0,
                  'mask': [[2, 3, 12, 3, 12, 13, 2, 13]]},
                 {'bbox': [0.0, 0.0, 5.0, 5.0], 'bbox_label': 0, 'ignore_flag': 1,
                  'mask': [[0, 0, 5, 0, 5, 5, 0, 5]]}]
    transform = TRANSFORMS.build(dict(type='LoadGroundingAnnotations'))
    before = annotation_results(instances)

    results = transform(dict(before))

    assert set(results) - set(before) == {'gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags',
                                          'gt_masks'}
    assert results['gt_bboxes'].tensor.tolist() == [[2, 3, 12, 13], [0, 0, 5, 5]]
    assert results['gt_bboxes_labels'].tolist() == [1, 0]
    assert results['gt_bboxes_labels'].dtype == np.int64
    assert results['gt_ignore_flags'].tolist() == [False, True]
    assert results['gt_masks'].masks.shape == (2, 20, 30)
    assert results['gt_masks'].masks[0].sum() == 100
    assert results['gt_masks'].masks[0, 3:13, 2:12].all()


def test_several_rings_merge_into_one_mask():
    rings = [[0, 0, 4, 0, 4, 4, 0, 4], [10, 10, 16, 10, 16, 12, 10, 12]]
    instances = [{'bbox': [0.0, 0.0, 16.0, 12.0], 'bbox_label': 0, 'ignore_flag': 0,
                  'mask': rings}]
    transform = TRANSFORMS.build(dict(type='LoadGroundingAnnotations'))

    mask = transform(annotation_results(instances))['gt_masks'].masks[0]

    assert mask.sum() == 16 + 12
    assert mask[0:4, 0:4].all()
    assert mask[10:12, 10:16].all()


def test_no_instances_gives_empty_arrays():
    transform = TRANSFORMS.build(dict(type='LoadGroundingAnnotations'))

    results = transform(annotation_results([]))

    assert tuple(results['gt_bboxes'].tensor.shape) == (0, 4)
    assert results['gt_masks'].masks.shape == (0, 20, 30)
    assert results['gt_bboxes_labels'].shape == (0,)


def test_resize_and_pad_to_square(tmp_path):
    """A 200x100 image at S=64: scale 0.32, content 64x32, padded to 64x64."""
    path = tmp_path / 'wide.png'
    Image.fromarray(np.full((100, 200, 3), 90, dtype=np.uint8)).save(path)
    instances = [{'bbox': [50.0, 25.0, 150.0, 75.0], 'bbox_label': 0, 'ignore_flag': 0,
                  'mask': [[50, 25, 150, 25, 150, 75, 50, 75]]}]
    pipeline = [TRANSFORMS.build(step) for step in (
        dict(type='LoadImageRGB'), dict(type='LoadGroundingAnnotations'),
        dict(type='Resize', scale=(64, 64), keep_ratio=True), dict(type='Pad', size=(64, 64)))]
    results = dict(img_path=str(path), height=100, width=200, instances=instances)

    shapes_after_each_step = []
    for transform in pipeline:
        results = transform(results)
        shapes_after_each_step.append(results['img_shape'])

    assert shapes_after_each_step == [(100, 200), (100, 200), (32, 64), (64, 64)]
    # mmcv's Pad overwrites img_shape with the padded size, so the content
    # size is ori_shape * scale_factor, not img_shape.
    assert results['img'].shape == (64, 64, 3)
    assert results['img'][32:].max() == 0
    assert results['pad_shape'] == (64, 64, 3)
    assert results['ori_shape'] == (100, 200)
    assert tuple(results['scale_factor']) == pytest.approx((0.32, 0.32))
    # [50, 25, 150, 75] * 0.32 = [16, 8, 48, 24]
    assert results['gt_bboxes'].tensor.tolist() == [pytest.approx([16.0, 8.0, 48.0, 24.0])]
    mask = results['gt_masks'].masks[0]
    assert mask.shape == (64, 64)
    assert mask[8:24, 16:48].all()
    assert mask.sum() == 16 * 32
    assert mask[32:].sum() == 0  # the padding below the content is empty


def test_load_annotations_accepts_poly2mask_true():
    transform = TRANSFORMS.build(dict(type='LoadGroundingAnnotations', poly2mask=True))
    instances = [{'bbox': [2.0, 3.0, 12.0, 13.0], 'bbox_label': 0, 'ignore_flag': 0,
                  'mask': [[2, 3, 12, 3, 12, 13, 2, 13]]}]

    mask = transform(annotation_results(instances))['gt_masks'].masks[0]

    assert mask.sum() == 100


def test_load_annotations_rejects_poly2mask_false():
    with pytest.raises(ValueError, match='always decodes masks to bitmaps'):
        TRANSFORMS.build(dict(type='LoadGroundingAnnotations', poly2mask=False))
