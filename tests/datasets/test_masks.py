"""read_mask_file on palette, gray, RGB and alpha mask images."""
import numpy as np
import pytest
from PIL import Image

from gsam_mm.datasets.masks import read_mask_file
from gsam_mm.errors import AnnotationError

HEIGHT, WIDTH = 12, 16


def object_region() -> np.ndarray:
    """A (H, W) bool mask: rows 2 to 5, columns 3 to 9."""
    region = np.zeros((HEIGHT, WIDTH), dtype=bool)
    region[2:6, 3:10] = True
    return region


def test_palette_mask_reads_indices(tmp_path):
    # Index 0 is white and index 1 black: the colours would make the
    # background the object.
    path = tmp_path / 'palette.png'
    image = Image.fromarray(object_region().astype(np.uint8), mode='P')
    image.putpalette([255, 255, 255, 0, 0, 0])
    image.save(path)

    mask = read_mask_file(str(path), HEIGHT, WIDTH)

    assert mask.dtype == np.uint8
    assert np.array_equal(mask, object_region())


def test_palette_mask_any_nonzero_index(tmp_path):
    path = tmp_path / 'palette.png'
    indices = object_region().astype(np.uint8) * 7
    indices[0, 0] = 2
    image = Image.fromarray(indices, mode='P')
    image.putpalette([0, 0, 0] * 8)
    image.save(path)

    mask = read_mask_file(str(path), HEIGHT, WIDTH)

    expected = object_region()
    expected[0, 0] = True
    assert np.array_equal(mask, expected)


def test_gray_and_rgb_masks(tmp_path):
    gray = object_region().astype(np.uint8) * 255
    rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[object_region(), 2] = 1  # only the blue channel is set
    Image.fromarray(gray).save(tmp_path / 'gray.png')
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')

    assert np.array_equal(read_mask_file(str(tmp_path / 'gray.png'), HEIGHT, WIDTH),
                          object_region())
    assert np.array_equal(read_mask_file(str(tmp_path / 'rgb.png'), HEIGHT, WIDTH),
                          object_region())


# PNG cannot store PA, TIFF can.
ALPHA_FILES = [('RGBA', 'png'), ('LA', 'png'), ('PA', 'tiff')]


@pytest.mark.parametrize('mode, extension', ALPHA_FILES)
def test_opaque_alpha_uses_colour(tmp_path, mode, extension):
    path = tmp_path / f'{mode}.{extension}'
    colour = Image.fromarray(object_region().astype(np.uint8) * (1 if mode == 'PA' else 255))
    channels = len(mode) - 1
    alpha = Image.new('L', (WIDTH, HEIGHT), 255)
    bands = [colour] * channels + [alpha]
    image = Image.merge(mode, bands)
    if mode == 'PA':
        image.putpalette([255, 255, 255, 0, 0, 0])
    image.save(path)

    mask = read_mask_file(str(path), HEIGHT, WIDTH)

    assert np.array_equal(mask, object_region())


@pytest.mark.parametrize('mode, extension', ALPHA_FILES)
def test_transparent_alpha_rejected(tmp_path, mode, extension):
    # Opaque white object on a transparent black background: colour and
    # alpha agree here, but in general one cannot tell which marks the object.
    path = tmp_path / f'{mode}.{extension}'
    region = object_region().astype(np.uint8)
    colour = Image.fromarray(region * (1 if mode == 'PA' else 255))
    alpha = Image.fromarray(region * 255)
    image = Image.merge(mode, [colour] * (len(mode) - 1) + [alpha])
    if mode == 'PA':
        image.putpalette([0, 0, 0, 255, 255, 255])
    image.save(path)

    with pytest.raises(AnnotationError) as error:
        read_mask_file(str(path), HEIGHT, WIDTH)

    assert str(path) in str(error.value)
    assert f'has {HEIGHT * WIDTH - 28} of {HEIGHT * WIDTH} pixels with alpha below 255' \
        in str(error.value)
