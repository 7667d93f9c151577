"""tools/infer.py on the demo photos: outputs, and results equal to tools/test.py's."""
import json

import numpy as np
from PIL import Image

from ..coco_files import save_rotated_jpeg
from ..conftest import DEMO_CONFIG, load_tool, save_random_demo_checkpoint

infer = load_tool('infer')
test_tool = load_tool('test')


def sorted_records(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda record: (record['image_id'], -record['score'],
                                               record['bbox']))


def test_infer_results_equal_test_tool(demo_data, tmp_path):
    # No dataset meta in the checkpoint, so infer.py reads the categories
    # (and their ids) from the config's annotation file, as test.py does.
    checkpoint = str(save_random_demo_checkpoint(tmp_path / 'random.pth'))
    annotations = str(demo_data / 'annotations.json')
    out_dir = tmp_path / 'infer'
    infer.main([DEMO_CONFIG, checkpoint, str(demo_data / 'JPEGImages'), '--score-thr', '0',
                '--ann-file', annotations, '--out-dir', str(out_dir), '--batch-size', '2',
                '--save-masks', '--cfg-options',
                f'test_dataloader.dataset.data_root={demo_data}/'])
    test_tool.main([DEMO_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'test'),
                    '--annotations', annotations, '--images', str(demo_data), '--cfg-options',
                    f'test_evaluator.outfile_prefix={tmp_path}/metric'])

    inferred = sorted_records(json.loads((out_dir / 'results.json').read_text()))
    evaluated_boxes = sorted_records(json.loads((tmp_path / 'metric.bbox.json').read_text()))
    evaluated_masks = sorted_records(json.loads((tmp_path / 'metric.segm.json').read_text()))
    assert len(inferred) == len(evaluated_boxes) == 150  # 50 per image (max_per_image)
    for ours, boxes, masks in zip(inferred, evaluated_boxes, evaluated_masks):
        assert ours['image_id'] == boxes['image_id']
        assert ours['category_id'] == boxes['category_id']
        assert np.isclose(ours['score'], boxes['score'], atol=1e-5)
        assert np.allclose(ours['bbox'], boxes['bbox'], atol=1e-3)
        assert ours['segmentation'] == masks['segmentation']

    overlays = sorted(path.name for path in (out_dir / 'overlays').glob('*.png'))
    assert overlays == ['2011_000003.png', '2011_000006.png', '2011_000025.png']
    mask_files = sorted((out_dir / 'masks').glob('2011_000003_*.png'))
    assert len(mask_files) == 50
    with Image.open(mask_files[0]) as mask:
        assert set(np.unique(np.asarray(mask))) <= {0, 255}

    info = json.loads((out_dir / 'run_info.json').read_text())
    assert info['category_id'] == 'the COCO category id of the training dataset'
    assert info['categories'][0] == {'id': 1, 'name': 'aeroplane', 'prompt_text': 'aeroplane'}
    assert sorted(image['id'] for image in info['images']) == [0, 1, 2]


def test_zero_shot_free_text(demo_data, tmp_path):
    # "none": the weights the config names, which for the demo config are random.
    out_dir = tmp_path / 'infer'
    infer.main([DEMO_CONFIG, 'none', str(demo_data / 'JPEGImages' / '2011_000025.jpg'),
                '--texts', 'bus . car', '--score-thr', '0', '--no-overlays',
                '--out-dir', str(out_dir)])

    records = json.loads((out_dir / 'results.json').read_text())
    info = json.loads((out_dir / 'run_info.json').read_text())
    assert len(records) == 50
    assert {record['category_id'] for record in records} <= {1, 2}
    assert {record['image_id'] for record in records} == {1}
    assert info['categories'] == [{'id': 1, 'name': 'bus', 'prompt_text': 'bus'},
                                  {'id': 2, 'name': 'car', 'prompt_text': 'car'}]
    assert 'position of the phrase' in info['category_id']
    assert not (out_dir / 'overlays').exists()


def test_ann_file_sizes_of_stored_pixels_skip_exif(tmp_path):
    # The record has the stored size, so training reads this image without
    # its EXIF rotation, and inference must use the same frame.
    image_path = tmp_path / 'images' / 'rotated.jpg'
    image_path.parent.mkdir()
    save_rotated_jpeg(image_path, 64, 48)
    ann_file = tmp_path / 'annotations.json'
    ann_file.write_text(json.dumps({'images': [
        {'id': 5, 'file_name': 'rotated.jpg', 'width': 64, 'height': 48}]}))
    out_dir = tmp_path / 'infer'

    infer.main([DEMO_CONFIG, 'none', str(image_path), '--texts', 'box', '--score-thr', '0',
                '--ann-file', str(ann_file), '--out-dir', str(out_dir)])

    info = json.loads((out_dir / 'run_info.json').read_text())
    records = json.loads((out_dir / 'results.json').read_text())
    assert info['images'] == [{'id': 5, 'file_name': str(image_path), 'width': 64,
                               'height': 48}]
    assert len(records) > 0
    assert {record['image_id'] for record in records} == {5}
    assert all(record['segmentation']['size'] == [48, 64] for record in records)
    with Image.open(out_dir / 'overlays' / 'rotated.png') as overlay:
        assert overlay.size == (64, 48)
