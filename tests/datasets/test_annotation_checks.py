"""Record checks that run before any value reaches pycocotools."""
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from gsam_mm.datasets.annotation_checks import (check_box, check_polygons, check_rle, clip_box,
                                                decode_rle_string)


@pytest.mark.parametrize('ring, expected', [
    ([0, 0, 8, 0, 8, 8], []),
    ([10, 10, 30, 11], ['polygon ring 0 has 4 numbers; a ring needs at least 6 numbers '
                        '(3 points)']),
    ([5, 5, 40, 40, 22, 7, 1], ['polygon ring 0 has an odd number of coordinates (7); '
                                'a ring is a list of x, y pairs']),
    ([0, 0, 8, 0, 8, float('nan')], ['polygon ring 0 contains a value that is not a '
                                     'finite number; coordinates must be finite numbers']),
    ([0, 0, 8, 0, 8, '8'], ['polygon ring 0 contains a value that is not a '
                            'finite number; coordinates must be finite numbers']),
])
def test_polygon_ring_rules(ring, expected):
    assert check_polygons([ring]) == expected


def test_polygon_far_outside_image_is_rejected():
    inside_margin = [-90, -40, 190, 0, 0, 90]
    absurd = [0, 0, 1e12, 0, 0, 10]

    assert check_polygons([inside_margin], 100, 50) == []
    problems = check_polygons([inside_margin, absurd], 100, 50)
    assert problems == ['polygon ring 1 reaches x from 0 to 1000000000000.0 and y from 0 to '
                        '10, far outside the 100x50 image; coordinates must be pixels, '
                        'within one image size of the image']


def test_boolean_coordinate_is_rejected():
    assert check_polygons([[0, 0, 8, 0, True, 8]]) == [
        'polygon ring 0 contains a value that is not a finite number; coordinates must be '
        'finite numbers']


def test_polygon_problem_names_ring_index():
    problems = check_polygons([[0, 0, 8, 0, 8, 8], [1, 2, 3, 4]])

    assert len(problems) == 1
    assert problems[0].startswith('polygon ring 1 has 4 numbers')


@pytest.mark.parametrize('bbox, valid', [
    ([0, 0, 1, 1], True),
    ([0, 0, 0, 5], False),
    ([0, 0, -1, 5], False),
    ([0, 0, 5], False),
    ([0, 0, float('inf'), 5], False),
    ([0, 0, True, 5], False),
])
def test_box_rules(bbox, valid):
    assert (check_box(bbox) == []) == valid


def test_clip_box():
    assert clip_box([90, 90, 50, 50], 100, 100) == [90.0, 90.0, 100.0, 100.0]
    assert clip_box([-5, 10, 20, 5], 100, 100) == [0.0, 10.0, 15.0, 15.0]
    assert clip_box([150, 20, 30, 30], 100, 100) is None


def test_rle_string_decoder_matches_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        bitmap = (rng.random((23, 17)) > rng.random()).astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(bitmap))
        counts = decode_rle_string(rle['counts'].decode('ascii'))

        assert sum(counts) == 23 * 17
        expected = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8)
        assert np.array_equal(expected, bitmap.flatten(order='F'))


def test_rle_string_decoder_rejects_garbage():
    with pytest.raises(ValueError, match='outside the RLE alphabet'):
        decode_rle_string('T<:V1 ')
    with pytest.raises(ValueError, match='ends inside a count'):
        decode_rle_string('T<:V1o')


def test_rle_checks():
    assert check_rle({'size': [4, 5], 'counts': [6, 3, 1, 3, 7]}, 4, 5) == []
    assert check_rle({'size': [4, 5], 'counts': [6, 3]}, 4, 5) == [
        'RLE counts cover 9 pixels but size [4, 5] has 20; the counts must cover every '
        'pixel once']
    assert check_rle({'size': [5, 4], 'counts': [20]}, 4, 5) == [
        'RLE size [5, 4] does not match the image size [4, 5] ([height, width])']
    assert check_rle({'size': [4, 5], 'counts': [25, -5]}, 4, 5) == [
        'uncompressed RLE counts must be non-negative integers']
    assert check_rle({'counts': [20]}, 4, 5)[0].startswith('RLE size None is invalid')
