"""tools/check_dataset.py on every known annotation case and on the demo data."""
import json

import pytest

from ..annotation_cases import CASES, write_case
from ..coco_files import annotation, write_coco
from ..conftest import REPO_ROOT, TEXT_ENCODER, load_tool

check_dataset = load_tool('check_dataset')

DEMO = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')


def run_check(tmp_path, case, *flags):
    """Run the tool on a case; return its exit status, JSON report and text output."""
    folder = tmp_path / case
    ann_file = write_case(folder, case)
    json_file = tmp_path / 'report.json'
    status = check_dataset.main(['--annotations', str(ann_file), '--images', str(folder),
                                 '--text-encoder', TEXT_ENCODER, '--no-progress',
                                 '--json', str(json_file), *flags])
    return status, json.loads(json_file.read_text())


def problems_of(report):
    return report['splits'][0]['problems']


def descriptions(report):
    return [problem['description'] for problem in problems_of(report)]


def statistics(report):
    return report['splits'][0]['statistics']


def test_every_case_has_a_check():
    assert set(EXPECTED) == set(CASES)


def expect_c01(report):
    assert len(problems_of(report)) == 1
    assert 'image 1 (a.jpg), annotation 11: polygon ring 0 has 4 numbers' \
        in descriptions(report)[0]
    assert problems_of(report)[0]['kind'] == 'invalid segmentation or mask file'


def expect_c02(report):
    assert [problem['annotation_id'] for problem in problems_of(report)] == [2]
    assert 'polygon ring 0 has 4 numbers' in descriptions(report)[0]
    assert statistics(report)['num_instances'] == 1  # the square decodes


def expect_c03(report):
    assert 'annotation 5: polygon ring 0 has an odd number of coordinates (5)' \
        in descriptions(report)[0]


def expect_c04(report):
    assert statistics(report)['num_instances'] == 1


def expect_c05(report):
    assert statistics(report)['num_instances'] == 1


def expect_c06(report):
    assert sorted(problem['annotation_id'] for problem in problems_of(report)) == [1, 3, 4]
    assert {problem['kind'] for problem in problems_of(report)} == {'invalid box'}
    assert statistics(report)['clipped_boxes'] == 1


def expect_c07(report):
    assert statistics(report)['crowd_regions'] == 1
    assert statistics(report)['num_instances'] == 1
    assert statistics(report)['images_without_objects'] == 1


def expect_c08(report):
    assert len(problems_of(report)) == 2
    for description in descriptions(report):
        assert 'image id 7 is used by 2 images (bg_a.jpg, bg_b.jpg)' in description


def expect_c09(report):
    assert statistics(report)['images_without_objects'] == 1
    assert statistics(report)['num_images'] == 2


def expect_c10(report):
    assert statistics(report)['num_instances'] == 2


def expect_c11(report):
    assert [problem['annotation_id'] for problem in problems_of(report)] == [4, 4]
    assert 'annotation id 4 is used by 2 annotations' in descriptions(report)[0]


def expect_c12(report):
    categories = report['vocabulary']['categories']
    assert [(entry['label'], entry['id']) for entry in categories] == [(0, 3), (1, 7), (2, 90)]
    assert [entry['instances']['train'] for entry in categories] == [1, 1, 1]


def expect_c13(report):
    categories = report['vocabulary']['categories']
    assert [(entry['id'], entry['text']) for entry in categories] == [
        (4, 'category 4'), (9, 'category 9')]


def expect_c14(report):
    split = report['splits'][0]
    assert split['error'] is None
    assert len(split['category_problems']) == 1
    assert "categories 1 ('car'), 5 ('car') share the prompt text 'car'" \
        in split['category_problems'][0]
    assert statistics(report)['num_instances'] > 0  # the records are checked anyway


def expect_c15(report):
    vocabulary = report['vocabulary']
    assert vocabulary['caption_tokens'] > 256
    assert len(vocabulary['captions']) > 1
    assert all(caption['num_tokens'] <= 256 for caption in vocabulary['captions'])
    last = vocabulary['categories'][-1]
    assert last['caption'] == len(vocabulary['captions']) - 1
    assert vocabulary['categories'][116]['instances']['train'] == 1


def expect_c16(report):
    modes = statistics(report)['image_modes']
    assert modes.get('L') == 1
    assert modes.get('RGBA') == 1
    assert sum(count for mode, count in modes.items() if mode.startswith('I')) == 1


def expect_c17(report):
    assert statistics(report)['num_instances'] == 1


def expect_c18(report):
    assert len(problems_of(report)) == 1
    assert 'image 2 (not_there.jpg): image file not found:' in descriptions(report)[0]
    assert 'not_there.jpg' in problems_of(report)[0]['message']


def expect_c19(report):
    assert sorted(problem['annotation_id'] for problem in problems_of(report)) == [1, 2]
    assert {problem['kind'] for problem in problems_of(report)} == {'unknown image or category'}


def expect_c20(report):
    assert statistics(report)['max_instances_per_image'] == 300


# Exit status (0: training can start) and the report's content, per case.
EXPECTED = {
    'c01_polygon_two_points': (1, expect_c01),
    'c02_polygon_four_numbers_and_square': (1, expect_c02),
    'c03_polygon_odd_count': (1, expect_c03),
    'c04_uncompressed_rle': (0, expect_c04),
    'c05_compressed_rle': (0, expect_c05),
    'c06_boxes_outside_or_degenerate': (1, expect_c06),
    'c07_crowd_only_image': (0, expect_c07),
    'c08_duplicate_image_ids': (1, expect_c08),
    'c09_image_without_annotations': (0, expect_c09),
    'c10_annotation_ids_from_zero': (0, expect_c10),
    'c11_duplicate_annotation_ids': (1, expect_c11),
    'c12_sparse_category_ids': (0, expect_c12),
    'c13_no_categories': (0, expect_c13),
    'c14_category_names': (1, expect_c14),
    'c15_prompt_longer_than_256_tokens': (0, expect_c15),
    'c16_image_modes': (0, expect_c16),
    'c17_mask_path': (0, expect_c17),
    'c18_missing_image_file': (1, expect_c18),
    'c19_unknown_category_and_image': (1, expect_c19),
    'c20_three_hundred_instances': (0, expect_c20),
}


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_case_report(tmp_path, case):
    expected_status, check_report = EXPECTED[case]

    status, report = run_check(tmp_path, case)

    assert status == expected_status
    assert report['can_train'] is (expected_status == 0)
    check_report(report)


def test_skip_switch_lets_training_start(tmp_path, capsys):
    status, report = run_check(tmp_path, 'c06_boxes_outside_or_degenerate',
                               '--on-bad-annotation', 'skip')

    assert status == 0
    assert len(problems_of(report)) == 3
    output = capsys.readouterr().out
    assert "problems: 3 (on_bad_annotation='skip' drops the records involved)" in output
    assert "Training can start: 3 invalid records are dropped by on_bad_annotation='skip'." \
        in output


def test_skip_that_leaves_nothing_stops(tmp_path, capsys):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}]
    ann_file = write_coco(tmp_path, images, [annotation(1, 1, 1, [1, 1, -5, 5])])

    status = check_dataset.main(['--annotations', str(ann_file), '--images', str(tmp_path),
                                 '--text-encoder', TEXT_ENCODER, '--no-progress',
                                 '--on-bad-annotation', 'skip'])

    output = capsys.readouterr().out
    assert status == 1
    assert 'no training targets:' in output
    assert 'nothing to train on' in output
    assert 'Training cannot start: give the training set at least one object.' in output


def test_category_problem_does_not_hide_records(tmp_path, capsys):
    images = [{'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}]
    categories = [{'id': 1, 'name': 'car'}, {'id': 2, 'name': 'Car'}]
    ann_file = write_coco(tmp_path, images, [annotation(1, 1, 1, [1, 1, 10, 10]),
                                             annotation(2, 1, 2, [1, 1, -5, 5]),
                                             annotation(3, 99, 1, [1, 1, 5, 5])], categories)

    status = check_dataset.main(['--annotations', str(ann_file), '--images', str(tmp_path),
                                 '--text-encoder', TEXT_ENCODER, '--no-progress'])

    output = capsys.readouterr().out
    assert status == 1
    assert 'category problems: 1 (training stops on them)' in output
    assert "categories 1 ('car'), 2 ('Car') share the prompt text 'car'" in output
    assert 'problems: 2 (training stops on them)' in output
    assert 'fix the category problems above' in output


def test_text_report_groups_problems(tmp_path, capsys):
    run_check(tmp_path, 'c19_unknown_category_and_image')

    output = capsys.readouterr().out
    assert 'problems: 2 (training stops on them)' in output
    assert 'unknown image or category (2):' in output
    assert "Training cannot start: fix the 2 invalid records above, or set " \
        "dataset.on_bad_annotation='skip' to drop them." in output


def test_text_report_shows_caption_split(tmp_path, capsys):
    run_check(tmp_path, 'c15_prompt_longer_than_256_tokens')

    output = capsys.readouterr().out
    assert 'the prompt is split into' in output
    assert 'caption 0: labels 0-' in output


def test_demo_config_can_train(demo_data, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # the config's data_root is relative

    status = check_dataset.main([DEMO, '--no-progress'])

    output = capsys.readouterr().out
    assert status == 0
    assert '== train, val, test: data/labelme_coco/annotations.json' in output
    assert "placeholder category 0 ('_background_') is left out" in output
    assert 'one caption of all categories: 50 tokens (text encoder limit 256)' in output
    assert 'Training can start.' in output


def test_json_only_output(tmp_path, capsys):
    ann_file = write_case(tmp_path, 'c09_image_without_annotations')

    status = check_dataset.main(['--annotations', str(ann_file), '--images', str(tmp_path),
                                 '--text-encoder', TEXT_ENCODER, '--no-progress',
                                 '--json', '-'])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report['can_train'] is True


def test_missing_tokenizer_is_noted(tmp_path, capsys):
    status, report = run_check(tmp_path, 'c09_image_without_annotations',
                               '--text-encoder', str(tmp_path / 'no_encoder'))

    assert status == 0
    assert 'cannot load the tokenizer' in report['vocabulary']['note']
    assert report['vocabulary']['caption_tokens'] is None
    assert 'The prompt was not checked against the token limit' in capsys.readouterr().out


def test_config_or_paths_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_dataset.main(['--annotations', 'a.json'])

    assert exit_info.value.code == 2
    assert 'give a CONFIG, or --annotations and --images' in capsys.readouterr().err
