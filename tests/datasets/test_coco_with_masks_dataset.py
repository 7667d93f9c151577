"""CocoWithMasksDataset: validation at build time, conversion and metainfo."""
import logging
import math

import numpy as np
import pytest

from gsam_mm.errors import AnnotationError, ConfigError
from gsam_mm.fields import CATEGORY_IDS, CATEGORY_TEXTS, IGNORE_LABEL, MASK_PATH

IMAGE_100 = {'id': 1, 'file_name': 'a.jpg', 'width': 100, 'height': 100}
LOADING = [dict(type='LoadImageRGB'), dict(type='LoadGroundingAnnotations')]


def error_text(build, ann_file, **kwargs) -> str:
    with pytest.raises(AnnotationError) as raised:
        build(ann_file, **kwargs)
    return str(raised.value)


def test_two_point_ring_is_rejected(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(11, 1, 1, [10, 10, 20, 1], segmentation=[[10, 10, 30, 11]])])

    message = error_text(build_dataset, ann_file)

    assert str(ann_file) in message
    assert "image 1 (a.jpg)" in message
    assert 'annotation 11' in message
    assert 'ring 0 has 4 numbers' in message
    assert 'at least 6 numbers' in message


def test_short_ring_never_reaches_pycocotools(tmp_path, coco, build_dataset, monkeypatch):
    import gsam_mm.datasets.masks as masks_module
    seen_rings = []
    original = masks_module.mask_utils.frPyObjects

    def spy(objects, height, width):
        if isinstance(objects, list):
            seen_rings.extend(objects)
        return original(objects, height, width)

    monkeypatch.setattr(masks_module.mask_utils, 'frPyObjects', spy)
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [0, 0, 8, 8], segmentation=[coco.square(0, 0, 8)]),
        coco.annotation(2, 1, 1, [10, 10, 5, 5], segmentation=[[10, 10, 15, 15]])])

    dataset = build_dataset(ann_file, pipeline=LOADING, on_bad_annotation='skip')
    dataset[0]

    assert seen_rings == [coco.square(0, 0, 8)]


def test_square_decodes_next_to_bad_ring(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [0, 0, 8, 8], segmentation=[coco.square(0, 0, 8)]),
        coco.annotation(2, 1, 1, [10, 10, 5, 5], segmentation=[[10, 10, 15, 15]])])

    message = error_text(build_dataset, ann_file)
    assert 'annotation 2:' in message
    assert 'annotation 1:' not in message

    results = build_dataset(ann_file, pipeline=LOADING, on_bad_annotation='skip')[0]
    masks = results['gt_masks'].masks
    assert masks.shape == (1, 100, 100)
    assert masks.sum() == 64
    assert masks[0, 0:8, 0:8].all()


def test_odd_and_non_finite_coordinates(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(5, 1, 1, [5, 5, 35, 35], segmentation=[[5, 5, 40, 40, 22]]),
        coco.annotation(6, 1, 1, [5, 5, 35, 35],
                        segmentation=[[5, 5, 40, 5, float('nan'), 40]]),
        coco.annotation(7, 1, 1, [5, 5, 35, 35],
                        segmentation=[[5, 5, 40, 5, float('inf'), 40]])])

    message = error_text(build_dataset, ann_file)

    assert '3 invalid record(s)' in message
    assert 'annotation 5: polygon ring 0 has an odd number of coordinates (5)' in message
    assert 'annotation 6: polygon ring 0 contains a value that is not a finite number' \
        in message
    assert 'annotation 7: polygon ring 0 contains a value that is not a finite number' \
        in message


def test_flat_polygon_list_is_rejected(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(3, 1, 1, [0, 0, 8, 8], segmentation=coco.square(0, 0, 8))])

    assert 'flat list of numbers' in error_text(build_dataset, ann_file)


def test_uncompressed_rle_is_column_major(tmp_path, coco, build_dataset):
    image = {'id': 1, 'file_name': 'small.png', 'width': 5, 'height': 4}
    ann_file = coco.write(tmp_path, [image], [coco.annotation(
        3, 1, 1, [1, 0, 3, 4], segmentation={'size': [4, 5], 'counts': [6, 3, 1, 3, 7]})])

    dataset = build_dataset(ann_file, pipeline=LOADING)
    stored = dataset.get_data_info(0)['instances'][0]['mask']
    mask = dataset[0]['gt_masks'].masks[0]

    assert isinstance(stored['counts'], str)
    assert mask.sum() == 6
    rows, cols = np.nonzero(mask)
    assert [cols.min(), rows.min(), cols.max() - cols.min() + 1,
            rows.max() - rows.min() + 1] == [1, 0, 3, 4]
    # Column-major: the first 6 pixels are column 0 and rows 0-1 of column 1.
    assert mask[:, 0].sum() == 0
    assert mask[:, 1].tolist() == [0, 0, 1, 1]


def test_compressed_rle_decodes_block(tmp_path, coco, build_dataset):
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    rle = {'size': [48, 64], 'counts': 'T<:V10000000000000000000000000000000000000le1'}
    ann_file = coco.write(tmp_path, [image], [
        coco.annotation(1, 1, 2, [8, 4, 20, 10], segmentation=rle)])

    mask = build_dataset(ann_file, pipeline=LOADING)[0]['gt_masks'].masks[0]

    assert mask.sum() == 200
    assert mask[4:14, 8:28].all()


def test_rle_with_wrong_size_or_counts(tmp_path, coco, build_dataset):
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    ann_file = coco.write(tmp_path, [image], [
        coco.annotation(1, 1, 1, [0, 0, 4, 4], segmentation={'size': [64, 48], 'counts': [3072]}),
        coco.annotation(2, 1, 1, [0, 0, 4, 4], segmentation={'size': [48, 64], 'counts': [10, 5]}),
        coco.annotation(3, 1, 1, [0, 0, 4, 4], segmentation={'size': [48, 64], 'counts': 'T<:V1'})])

    message = error_text(build_dataset, ann_file)

    assert 'annotation 1: RLE size [64, 48] does not match the image size [48, 64]' in message
    assert 'annotation 2: RLE counts cover 15 pixels' in message
    assert 'annotation 3: ' in message


def test_mask_path_is_read(tmp_path, coco, build_dataset):
    from PIL import Image
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    ann_file = coco.write(tmp_path, [image], [
        coco.annotation(1, 1, 2, [8, 4, 20, 10], mask_path='masks/a_1.png')])
    (tmp_path / 'masks').mkdir()
    white_box = coco.draw_boxes(64, 48, [[8, 4, 20, 10]])[..., 0] > 100
    Image.fromarray(white_box.astype(np.uint8) * 255).save(tmp_path / 'masks' / 'a_1.png')

    dataset = build_dataset(ann_file, pipeline=LOADING)
    instance = dataset.get_data_info(0)['instances'][0]
    mask = dataset[0]['gt_masks'].masks[0]

    assert instance[MASK_PATH] == str(tmp_path / 'masks' / 'a_1.png')
    assert 'mask' not in instance
    assert mask.sum() == 200
    assert mask[4:14, 8:28].all()


def test_missing_or_wrong_size_mask_file(tmp_path, coco, build_dataset):
    from PIL import Image
    image = {'id': 1, 'file_name': 'a.jpg', 'width': 64, 'height': 48}
    ann_file = coco.write(tmp_path, [image], [
        coco.annotation(1, 1, 2, [8, 4, 20, 10], mask_path='masks/none.png'),
        coco.annotation(2, 1, 2, [8, 4, 20, 10], mask_path='masks/small.png')])
    (tmp_path / 'masks').mkdir()
    Image.new('L', (32, 24)).save(tmp_path / 'masks' / 'small.png')

    message = error_text(build_dataset, ann_file)

    assert f'mask file not found: {tmp_path / "masks" / "none.png"}' in message
    assert 'is 32x24 pixels but the image is 64x48' in message


def test_bad_boxes_reported_together(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [150, 20, 30, 30]),
        coco.annotation(2, 1, 1, [90, 90, 50, 50]),
        coco.annotation(3, 1, 1, [10, 10, 0, 5]),
        coco.annotation(4, 1, 1, [10, 10, -4, 5]),
        coco.annotation(5, 1, 2, [20, 20, 30, 30], segmentation=[coco.square(20, 20, 30)])])

    message = error_text(build_dataset, ann_file)

    assert '3 invalid record(s)' in message
    assert 'annotation 1: bbox [150, 20, 30, 30] lies entirely outside the 100x100 image' \
        in message
    assert 'annotation 3: bbox [10, 10, 0, 5] has zero or negative width' in message
    assert 'annotation 4: bbox [10, 10, -4, 5] has zero or negative width' in message
    assert 'annotation 2:' not in message
    assert 'annotation 5:' not in message


def test_bad_boxes_skipped_with_one_warning(tmp_path, coco, build_dataset, log_records,
                                            messages_at):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [150, 20, 30, 30]),
        coco.annotation(2, 1, 1, [90, 90, 50, 50]),
        coco.annotation(3, 1, 1, [10, 10, 0, 5]),
        coco.annotation(4, 1, 1, [10, 10, -4, 5]),
        coco.annotation(5, 1, 2, [20, 20, 30, 30], segmentation=[coco.square(20, 20, 30)])])

    dataset = build_dataset(ann_file, on_bad_annotation='skip')
    instances = dataset.get_data_info(0)['instances']

    skip_warnings = [message for message in messages_at(log_records, logging.WARNING)
                     if "on_bad_annotation='skip'" in message]
    assert len(skip_warnings) == 1
    assert 'dropped 0 images and 3 annotations' in skip_warnings[0]
    for annotation_id in (1, 3, 4):
        assert f'annotation {annotation_id}:' in skip_warnings[0]
    assert [instance['bbox'] for instance in instances] == [[90.0, 90.0, 100.0, 100.0],
                                                             [20.0, 20.0, 50.0, 50.0]]
    assert any('1 boxes extend beyond their image and were clipped' in message
               for message in messages_at(log_records, logging.INFO))


def test_box_only_annotation_mask(tmp_path, coco, build_dataset, log_records,
                                              messages_at):
    ann_file = coco.write(tmp_path, [IMAGE_100], [coco.annotation(2, 1, 1, [90, 90, 50, 50])])

    results = build_dataset(ann_file, pipeline=LOADING)[0]

    mask = results['gt_masks'].masks[0]
    assert mask.sum() == 100
    assert mask[90:100, 90:100].all()
    assert any('1 annotations have no segmentation' in message
               for message in messages_at(log_records, logging.WARNING))


def test_crowd_region_is_ignored(tmp_path, coco, build_dataset, log_records, messages_at):
    images = [{'id': 5, 'file_name': 'crowd.jpg', 'width': 64, 'height': 48},
              {'id': 6, 'file_name': 'plain.jpg', 'width': 64, 'height': 48}]
    rle = {'size': [48, 64], 'counts': 'T<:V10000000000000000000000000000000000000le1'}
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(1, 5, 1, [8, 4, 20, 10], iscrowd=1, segmentation=rle),
        coco.annotation(2, 6, 1, [4, 4, 16, 16], segmentation=[coco.square(4, 4, 16)])])
    pipeline = LOADING + [dict(type='PackDetInputs')]

    dataset = build_dataset(ann_file, pipeline=pipeline)
    crowd_sample = dataset[0]['data_samples']

    assert dataset.get_data_info(0)['instances'][0]['ignore_flag'] == 1
    assert len(crowd_sample.gt_instances) == 0
    assert len(crowd_sample.ignored_instances) == 1
    assert crowd_sample.ignored_instances.masks.masks.sum() == 200
    assert any('1 crowd regions (iscrowd=1) are ignore regions' in message
               for message in messages_at(log_records, logging.INFO))


def test_duplicate_image_ids_name_both_files(tmp_path, coco, build_dataset):
    images = [{'id': 7, 'file_name': 'bg_a.jpg', 'width': 64, 'height': 64},
              {'id': 7, 'file_name': 'bg_b.jpg', 'width': 64, 'height': 64}]
    ann_file = coco.write(tmp_path, images, [])

    message = error_text(build_dataset, ann_file)

    assert 'image id 7 is used by 2 images (bg_a.jpg, bg_b.jpg)' in message


def test_negative_image_is_kept(tmp_path, coco, build_dataset):
    images = [IMAGE_100, {'id': 2, 'file_name': 'empty.jpg', 'width': 100, 'height': 100}]
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(1, 1, 1, [10, 10, 30, 30], segmentation=[coco.square(10, 10, 30)])])

    dataset = build_dataset(ann_file, pipeline=LOADING)
    results = dataset[1]

    assert len(dataset) == 2
    assert tuple(results['gt_bboxes'].tensor.shape) == (0, 4)
    assert results['gt_masks'].masks.shape == (0, 100, 100)
    assert results['gt_bboxes_labels'].shape == (0,)
    assert results['gt_ignore_flags'].shape == (0,)


def test_filter_empty_gt_logs_count(tmp_path, coco, build_dataset, log_records, messages_at):
    images = [IMAGE_100, {'id': 2, 'file_name': 'empty.jpg', 'width': 100, 'height': 100}]
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(1, 1, 1, [10, 10, 30, 30], segmentation=[coco.square(10, 10, 30)])])

    dataset = build_dataset(ann_file, filter_cfg=dict(filter_empty_gt=True))

    assert len(dataset) == 1
    assert any('filter_empty_gt dropped 1 images' in message
               for message in messages_at(log_records, logging.WARNING))


def test_annotation_ids_from_zero_load(tmp_path, coco, build_dataset):
    images = [{'id': 0, 'file_name': 'a.jpg', 'width': 100, 'height': 100},
              {'id': 1, 'file_name': 'b.jpg', 'width': 100, 'height': 100}]
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(0, 0, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(1, 1, 1, [2, 2, 30, 30], segmentation=[coco.square(2, 2, 30)])],
        categories=[{'id': 1, 'name': 'cell'}])

    dataset = build_dataset(ann_file)

    assert [dataset.get_data_info(index)['img_id'] for index in range(2)] == [0, 1]
    assert dataset.metainfo['classes'] == ('cell',)


def test_duplicate_annotation_ids(tmp_path, coco, build_dataset):
    images = [IMAGE_100, {'id': 2, 'file_name': 'b.jpg', 'width': 100, 'height': 100}]
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(4, 1, 1, [1, 1, 5, 5], segmentation=[coco.square(1, 1, 5)]),
        coco.annotation(4, 2, 1, [2, 2, 5, 5], segmentation=[coco.square(2, 2, 5)])])

    message = error_text(build_dataset, ann_file)

    assert '2 invalid record(s)' in message
    assert 'image 1 (a.jpg), annotation 4: annotation id 4 is used by 2 annotations' in message
    assert 'image 2 (b.jpg), annotation 4: annotation id 4 is used by 2 annotations' in message


def test_duplicate_ids_on_one_image_name_positions(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(4, 1, 1, [1, 1, 5, 5], segmentation=[coco.square(1, 1, 5)]),
        coco.annotation(4, 1, 1, [2, 2, 5, 5], segmentation=[coco.square(2, 2, 5)])])

    message = error_text(build_dataset, ann_file)

    assert 'at positions 0, 1 of the "annotations" list; this one at 0)' in message
    assert 'at positions 0, 1 of the "annotations" list; this one at 1)' in message


def test_training_set_without_targets_stops(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [-5, 1, 5, 5], segmentation=[coco.square(1, 1, 5)]),
        coco.annotation(2, 1, 1, [1, 1, 5, 5], segmentation=[coco.square(1, 1, 5)], iscrowd=1)])

    message = error_text(build_dataset, ann_file, on_bad_annotation='skip')

    assert f'{ann_file}: nothing to train on' in message
    assert "1 invalid records dropped by on_bad_annotation='skip'" in message


def test_evaluation_set_without_targets_loads(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [])

    dataset = build_dataset(ann_file, test_mode=True)

    assert len(dataset) == 1


def test_sparse_category_ids_map_to_labels(tmp_path, coco, build_dataset):
    categories = [{'id': 3, 'name': 'apple'}, {'id': 7, 'name': 'pear'},
                  {'id': 90, 'name': 'plum'}]
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 3, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(2, 1, 7, [30, 30, 20, 20], segmentation=[coco.square(30, 30, 20)]),
        coco.annotation(3, 1, 90, [60, 60, 20, 20], segmentation=[coco.square(60, 60, 20)])],
        categories=categories)

    dataset = build_dataset(ann_file)

    labels = [instance['bbox_label'] for instance in dataset.get_data_info(0)['instances']]
    assert labels == [0, 1, 2]
    assert dataset.metainfo[CATEGORY_IDS] == (3, 7, 90)
    assert dataset.metainfo['classes'] == ('apple', 'pear', 'plum')
    assert dataset.metainfo[CATEGORY_TEXTS] == ('apple', 'pear', 'plum')


def test_classes_select_categories_in_config_order(tmp_path, coco, build_dataset,
                                                    log_records, messages_at):
    categories = [{'id': 3, 'name': 'apple'}, {'id': 7, 'name': 'pear'},
                  {'id': 90, 'name': 'plum'}]
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 3, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(2, 1, 7, [30, 30, 20, 20], segmentation=[coco.square(30, 30, 20)]),
        coco.annotation(3, 1, 90, [60, 60, 20, 20], segmentation=[coco.square(60, 60, 20)])],
        categories=categories)

    dataset = build_dataset(ann_file, metainfo=dict(classes=('plum', 'apple')))

    instances = dataset.get_data_info(0)['instances']
    assert dataset.metainfo[CATEGORY_IDS] == (90, 3)
    assert [(instance['bbox'][0], instance['bbox_label']) for instance in instances] == \
        [(1.0, 1), (60.0, 0)]
    assert any('1 annotations of categories not in metainfo.classes were dropped' in message
               for message in messages_at(log_records, logging.INFO))
    with pytest.raises(ConfigError, match=r"classes \['kiwi'\]"):
        build_dataset(ann_file, metainfo=dict(classes=('kiwi', 'apple')))


def test_missing_categories_get_placeholder_names(tmp_path, coco, build_dataset,
                                                  log_records, messages_at):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 9, [30, 30, 20, 20], segmentation=[coco.square(30, 30, 20)]),
        coco.annotation(2, 1, 4, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])],
        categories=None)

    dataset = build_dataset(ann_file)

    assert dataset.metainfo[CATEGORY_IDS] == (4, 9)
    assert dataset.metainfo['classes'] == ('category_4', 'category_9')
    assert dataset.metainfo[CATEGORY_TEXTS] == ('category 4', 'category 9')
    labels = [instance['bbox_label'] for instance in dataset.get_data_info(0)['instances']]
    assert labels == [1, 0]
    warnings = messages_at(log_records, logging.WARNING)
    assert any("named ['category_4', 'category_9']" in message for message in warnings)


def test_missing_categories_named_by_config(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 4, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(2, 1, 9, [30, 30, 20, 20], segmentation=[coco.square(30, 30, 20)])],
        categories=None)

    dataset = build_dataset(ann_file, metainfo=dict(classes=('Red_Cell', 'white.cell')))

    assert dataset.metainfo['classes'] == ('Red_Cell', 'white.cell')
    assert dataset.metainfo[CATEGORY_TEXTS] == ('red cell', 'white cell')
    with pytest.raises(ConfigError, match='use 2 category ids .* gives 3 names'):
        build_dataset(ann_file, metainfo=dict(classes=('a', 'b', 'c')))


def test_category_names_become_prompt_text(tmp_path, coco, build_dataset):
    categories = [{'id': 1, 'name': 'car'}, {'id': 2, 'name': 'taxi'},
                  {'id': 3, 'name': 'potted_plant'}, {'id': 4, 'name': 'Traffic.Light'},
                  {'id': 5, 'name': 'car'}]
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 3, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])],
        categories=categories)

    message = error_text(build_dataset, ann_file)
    dataset = build_dataset(ann_file, metainfo=dict(classes=('potted_plant', 'Traffic.Light')))

    assert "categories 1 ('car'), 5 ('car') share the prompt text 'car'" in message
    assert dataset.metainfo[CATEGORY_TEXTS] == ('potted plant', 'traffic light')
    assert dataset.get_data_info(0)['text'] == ('potted plant', 'traffic light')


def test_placeholder_category_becomes_ignore_region(tmp_path, coco, build_dataset,
                                                    log_records, messages_at):
    categories = [{'id': 0, 'name': '_background_'}, {'id': 1, 'name': 'person'},
                  {'id': 2, 'name': '__ignore__'}]
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(0, 1, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(1, 1, 2, [30, 30, 20, 20], segmentation=[coco.square(30, 30, 20)])],
        categories=categories)

    dataset = build_dataset(ann_file)
    instances = dataset.get_data_info(0)['instances']

    assert dataset.metainfo['classes'] == ('person',)
    assert dataset.metainfo[CATEGORY_IDS] == (1,)
    assert [(instance['bbox_label'], instance['ignore_flag']) for instance in instances] == \
        [(0, 0), (IGNORE_LABEL, 1)]
    assert dataset.get_cat_ids(0) == [0]
    placeholder_lines = [message for message in messages_at(log_records, logging.INFO)
                         if 'placeholder categories' in message]
    assert len(placeholder_lines) == 1
    assert "(0, '_background_')" in placeholder_lines[0]
    assert '1 annotations use them and become ignore regions' in placeholder_lines[0]


def test_missing_image_file_fails_at_build(tmp_path, coco, build_dataset):
    images = [IMAGE_100, {'id': 2, 'file_name': 'not_there.jpg', 'width': 100, 'height': 100}]
    ann_file = coco.write(tmp_path, images, [
        coco.annotation(1, 1, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(2, 2, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])],
        missing_files=('not_there.jpg',))

    message = error_text(build_dataset, ann_file)
    dataset = build_dataset(ann_file, on_bad_annotation='skip')

    assert f'image file not found: {tmp_path / "not_there.jpg"}' in message
    assert "image 2 (not_there.jpg)" in message
    assert len(dataset) == 1


def test_unknown_category_and_image_reported_together(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 42, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)]),
        coco.annotation(2, 99, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])])

    message = error_text(build_dataset, ann_file)

    assert '2 invalid record(s)' in message
    assert 'image 1 (a.jpg), annotation 1: category_id 42 is not the id of any category' \
        in message
    assert 'image 99, annotation 2: image_id 99 is not the id of any image' in message


def test_size_read_from_header_when_missing(tmp_path, coco, build_dataset):
    from PIL import Image
    ann_file = coco.write(tmp_path, [{'id': 1, 'file_name': 'a.png'}], [
        coco.annotation(1, 1, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])])
    rotated = Image.new('RGB', (40, 30))
    exif = rotated.getexif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to display
    rotated.save(tmp_path / 'b.jpg', exif=exif.tobytes())
    ann_file_rotated = coco.write(tmp_path, [{'id': 2, 'file_name': 'b.jpg'}], [],
                                  missing_files=('b.jpg',), name='rotated.json')

    info = build_dataset(ann_file).get_data_info(0)
    rotated_info = build_dataset(ann_file_rotated).get_data_info(0)

    assert (info['width'], info['height']) == (64, 48)
    assert (rotated_info['width'], rotated_info['height']) == (30, 40)


def save_rotated_jpeg(path, stored_width, stored_height):
    """Write a JPEG whose EXIF orientation 6 displays it rotated by 90 degrees."""
    from PIL import Image
    image = Image.new('RGB', (stored_width, stored_height))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif.tobytes())


def test_size_of_stored_pixels_skips_exif(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [{'id': 1, 'file_name': 'b.jpg', 'width': 40,
                                      'height': 30}], [], missing_files=('b.jpg',))
    save_rotated_jpeg(tmp_path / 'b.jpg', 40, 30)

    dataset = build_dataset(ann_file, pipeline=[dict(type='LoadImageRGB')])

    assert dataset.get_data_info(0)['apply_exif'] is False
    assert dataset[0]['img'].shape == (30, 40, 3)


def test_size_of_rotated_pixels_applies_exif(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [{'id': 1, 'file_name': 'b.jpg', 'width': 30,
                                      'height': 40}], [], missing_files=('b.jpg',))
    save_rotated_jpeg(tmp_path / 'b.jpg', 40, 30)

    dataset = build_dataset(ann_file, pipeline=[dict(type='LoadImageRGB')])

    assert dataset.get_data_info(0)['apply_exif'] is True
    assert dataset[0]['img'].shape == (40, 30, 3)


def test_size_matching_no_orientation_is_reported(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [{'id': 5, 'file_name': 'b.jpg', 'width': 50,
                                      'height': 30}], [], missing_files=('b.jpg',))
    save_rotated_jpeg(tmp_path / 'b.jpg', 40, 30)

    message = error_text(build_dataset, ann_file)

    assert "image 5 (b.jpg)" in message
    assert ('width=50, height=30 do not match the image, which is 30x40 pixels after '
            'EXIF orientation 6 (40x30 as stored)') in message


def test_unreadable_image_is_reported(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [], missing_files=('a.jpg',))
    (tmp_path / 'a.jpg').write_bytes(b'not an image')

    message = error_text(build_dataset, ann_file)

    assert 'image 1 (a.jpg): cannot read the image header of' in message


def test_data_info_keys(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 2, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])])

    info = build_dataset(ann_file).get_data_info(0)

    assert {'img_path', 'img_id', 'height', 'width', 'text', 'instances'} <= set(info)
    assert info['img_path'] == str(tmp_path / 'a.jpg')
    assert info['text'] == ('cat', 'dog')
    assert set(info['instances'][0]) == {'bbox', 'bbox_label', 'ignore_flag', 'mask'}
    assert info['instances'][0]['bbox_label'] == 1


def test_data_root_and_prefix_are_joined(tmp_path, coco):
    from mmdet.registry import DATASETS
    coco.write(tmp_path / 'images', [IMAGE_100], [
        coco.annotation(1, 1, 1, [1, 1, 20, 20], segmentation=[coco.square(1, 1, 20)])],
        name='../train.json')

    dataset = DATASETS.build(dict(type='CocoWithMasksDataset', data_root=str(tmp_path),
                                  ann_file='train.json', data_prefix=dict(img='images/')))

    assert dataset.get_data_info(0)['img_path'] == str(tmp_path / 'images' / 'a.jpg')


def test_invalid_on_bad_annotation_value(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [])

    with pytest.raises(ConfigError, match="one of \\('error', 'skip'\\), got 'drop'"):
        build_dataset(ann_file, on_bad_annotation='drop')


def test_json_constants_for_non_finite_box(tmp_path, coco, build_dataset):
    ann_file = coco.write(tmp_path, [IMAGE_100], [
        coco.annotation(1, 1, 1, [1, 1, math.inf, 20])])

    assert 'not a finite number' in error_text(build_dataset, ann_file)
