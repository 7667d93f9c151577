"""COCO results records: category ids, RLE masks and image ids."""
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gsam_mm.apis import (Detections, PromptCategories, detections_to_coco,
                          image_ids_from_annotations, match_annotation_images)
from gsam_mm.apis.coco_results import run_info
from gsam_mm.apis.image_inputs import collect_image_paths
from gsam_mm.errors import InputError

from ..coco_files import save_rotated_jpeg

HEIGHT, WIDTH = 40, 60
TRAINING = PromptCategories(names=('apple', 'pear'), texts=('apple', 'pear'),
                            category_ids=(3, 90), from_dataset=True)


def square_mask(x: int, y: int, side: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[y:y + side, x:x + side] = True
    return mask


def detections(categories: PromptCategories) -> Detections:
    """A pear at (5, 5) and an apple at (30, 10), both 10 px squares."""
    return Detections(
        bboxes=np.array([[5, 5, 15, 15], [30, 10, 40, 20]], dtype=np.float32),
        scores=np.array([0.9, 0.6], dtype=np.float32),
        labels=np.array([1, 0]),
        masks=np.stack([square_mask(5, 5, 10), square_mask(30, 10, 10)]),
        categories=categories, image_path='a.png', image_shape=(HEIGHT, WIDTH))


def ground_truth() -> COCO:
    coco = COCO()
    coco.dataset = {
        'images': [{'id': 7, 'width': WIDTH, 'height': HEIGHT, 'file_name': 'a.png'}],
        'categories': [{'id': 3, 'name': 'apple'}, {'id': 90, 'name': 'pear'}],
        'annotations': [
            {'id': 1, 'image_id': 7, 'category_id': 90, 'bbox': [5, 5, 10, 10], 'area': 100,
             'iscrowd': 0, 'segmentation': [[5, 5, 15, 5, 15, 15, 5, 15]]},
            {'id': 2, 'image_id': 7, 'category_id': 3, 'bbox': [30, 10, 10, 10], 'area': 100,
             'iscrowd': 0, 'segmentation': [[30, 10, 40, 10, 40, 20, 30, 20]]}]}
    coco.createIndex()
    return coco


def test_training_category_ids_written():
    records = detections_to_coco(detections(TRAINING), image_id=7)

    assert [record['category_id'] for record in records] == [90, 3]
    assert records[0]['bbox'] == [5.0, 5.0, 10.0, 10.0]
    assert records[0]['score'] == pytest.approx(0.9)
    assert all(record['image_id'] == 7 for record in records)


def test_free_text_ids_are_positions():
    records = detections_to_coco(detections(PromptCategories.from_free_text('apple . pear')), 1)

    assert [record['category_id'] for record in records] == [2, 1]


def test_rle_round_trip():
    source = detections(TRAINING)
    records = json.loads(json.dumps(detections_to_coco(source, image_id=7)))

    for record, mask in zip(records, source.masks):
        rle = {'size': record['segmentation']['size'],
               'counts': record['segmentation']['counts'].encode('ascii')}
        assert np.array_equal(mask_utils.decode(rle).astype(bool), mask)


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_results_load_and_score(iou_type):
    coco = ground_truth()
    results = coco.loadRes(detections_to_coco(detections(TRAINING), image_id=7))
    evaluation = COCOeval(coco, results, iou_type)
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()

    assert evaluation.stats[0] == pytest.approx(1.0)


def test_run_info_explains_ids():
    info = run_info(PromptCategories.from_free_text('crack . rust'),
                    [{'id': 1, 'file_name': 'a.png', 'width': 60, 'height': 40}], None)

    assert 'position of the phrase' in info['category_id']
    assert info['categories'][1] == {'id': 2, 'name': 'rust', 'prompt_text': 'rust'}
    assert 'position of the image' in info['image_id']


def write_annotations(tmp_path) -> str:
    ann_file = tmp_path / 'annotations.json'
    ann_file.write_text(json.dumps({'images': [
        {'id': 11, 'file_name': 'JPEGImages/a.jpg'},
        {'id': 12, 'file_name': 'JPEGImages/b.jpg'},
        {'id': 13, 'file_name': 'other/b.jpg'}]}))
    return str(ann_file)


def test_image_ids_by_path_suffix(tmp_path):
    ann_file = write_annotations(tmp_path)
    ids = image_ids_from_annotations(['/data/set/JPEGImages/b.jpg', 'photos/a.jpg'], ann_file)

    assert ids == {'/data/set/JPEGImages/b.jpg': 12, 'photos/a.jpg': 11}


def test_ambiguous_base_name_rejected(tmp_path):
    ann_file = write_annotations(tmp_path)
    with pytest.raises(InputError, match=r'photos/b.jpg matches 2 images \[12, 13\]'):
        image_ids_from_annotations(['photos/b.jpg'], ann_file)


def test_unknown_image_rejected(tmp_path):
    ann_file = write_annotations(tmp_path)
    with pytest.raises(InputError, match='c.jpg matches no image of'):
        image_ids_from_annotations(['c.jpg'], ann_file)


def test_two_files_for_one_image_rejected(tmp_path):
    """A rendering beside the photo with the same base name would silently
    be scored as a second prediction set for the same image."""
    ann_file = write_annotations(tmp_path)
    with pytest.raises(InputError, match=r"image id 11 by \['JPEGImages/a.jpg', "
                                         r"'Visualization/a.jpg'\]"):
        image_ids_from_annotations(['JPEGImages/a.jpg', 'Visualization/a.jpg'], ann_file)


def test_exif_rule_follows_record_size(tmp_path, log_records):
    # Stored 64x48, displayed 48x64 after EXIF orientation 6.
    records = [{'id': 1, 'file_name': 'stored.jpg', 'width': 64, 'height': 48},
               {'id': 2, 'file_name': 'displayed.jpg', 'width': 48, 'height': 64},
               {'id': 3, 'file_name': 'no_size.jpg'},
               {'id': 4, 'file_name': 'wrong.jpg', 'width': 50, 'height': 50}]
    paths = []
    for record in records:
        save_rotated_jpeg(tmp_path / record['file_name'], 64, 48)
        paths.append(str(tmp_path / record['file_name']))
    ann_file = tmp_path / 'annotations.json'
    ann_file.write_text(json.dumps({'images': records}))

    matches = match_annotation_images(paths, str(ann_file))

    assert [matches[path].image_id for path in paths] == [1, 2, 3, 4]
    assert [matches[path].apply_exif for path in paths] == [False, True, True, True]
    warnings = [record.getMessage() for record in log_records if record.levelname == 'WARNING']
    assert len(warnings) == 1
    assert warnings[0].startswith('1 images do not have the width and height of their record')
    assert 'wrong.jpg: width=50, height=50 do not match the image' in warnings[0]


def test_collect_files_folders_and_globs(tmp_path):
    for name in ('b.jpg', 'a.PNG', 'notes.txt', 'sub/c.jpeg'):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b'')

    from_folder = collect_image_paths([str(tmp_path)])
    from_glob = collect_image_paths([str(tmp_path / '*.jpg'), str(tmp_path / 'b.jpg')])

    assert [path.split('/')[-1] for path in from_folder] == ['a.PNG', 'b.jpg', 'c.jpeg']
    assert from_glob == [str(tmp_path / 'b.jpg')]
    with pytest.raises(InputError, match='not found'):
        collect_image_paths([str(tmp_path / 'missing.jpg')])
    with pytest.raises(InputError, match='matches no image file'):
        collect_image_paths([str(tmp_path / '*.gif')])
