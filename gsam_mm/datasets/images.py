"""Image files read with Pillow: header sizes and uint8 RGB pixels.

Both readers apply the EXIF orientation by default. Header sizes and
decoded pixels then agree with each other and with annotations drawn on the
image as a viewer shows it.
"""
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

# EXIF orientations 5 to 8 rotate by 90 or 270 degrees, which swaps width
# and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

# Modes whose pixels are integers wider than 8 bits or floats.
_HIGH_BIT_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


@dataclass(frozen=True)
class ImageHeader:
    """Size, mode and orientation from an image file's header, read before
    any pixel is decoded.

    Attributes:
        stored_width: width of the pixels as stored in the file.
        stored_height: height of the pixels as stored in the file.
        orientation: EXIF orientation tag, 1 when absent.
        mode: Pillow mode of the stored pixels ('RGB', 'L', 'RGBA', 'I;16', ...).
    """

    stored_width: int
    stored_height: int
    orientation: int
    mode: str

    @property
    def size(self) -> tuple[int, int]:
        """`(width, height)` as a viewer shows the image, after EXIF orientation."""
        if self.orientation in _TRANSPOSING_ORIENTATIONS:
            return self.stored_height, self.stored_width
        return self.stored_width, self.stored_height

    @property
    def stored_size(self) -> tuple[int, int]:
        """`(width, height)` of the stored pixels, EXIF orientation ignored."""
        return self.stored_width, self.stored_height


def read_image_header(path: str) -> ImageHeader:
    """Parse the size, EXIF orientation and mode from an image file's header."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        return ImageHeader(width, height, orientation, image.mode)


def read_image_size(path: str) -> tuple[int, int]:
    """Read `(width, height)` from the file header, after EXIF orientation.

    Only the header is parsed; no pixels are decoded.
    """
    return read_image_header(path).size


def describe_conversion(mode: str) -> str:
    """Describe how `read_rgb_image` converts pixels of a Pillow mode."""
    if mode == 'RGB':
        return 'read as is'
    if mode in _HIGH_BIT_DEPTH_MODES:
        return 'gray values scaled so that the image maximum becomes 255, then copied to 3 channels'
    if mode in ('RGBA', 'LA', 'PA'):
        return 'alpha channel dropped, converted to RGB'
    return 'converted to RGB'


def read_rgb_image(path: str, apply_exif: bool = True) -> np.ndarray:
    """Decode an image file into RGB pixels of shape (H, W, 3), dtype uint8.

    The EXIF orientation is applied unless `apply_exif` is False, which is
    for annotation files whose sizes were taken from the stored pixels.

    Gray and palette images are expanded to three channels and an alpha
    channel is dropped. 16-bit, 32-bit and float gray images are scaled
    linearly so that 0 stays 0 and the image's maximum becomes 255.
    Scaling by the image's maximum, not by the type's, keeps 12-bit data
    stored in 16-bit files visible (divided by 257 it would be nearly black);
    the cost is that brightness is not comparable across such images.
    """
    with Image.open(path) as image:
        if apply_exif:
            image = ImageOps.exif_transpose(image)
        if image.mode in _HIGH_BIT_DEPTH_MODES:
            gray = _scale_to_uint8(np.asarray(image))
            return np.repeat(gray[:, :, None], 3, axis=2)
        if image.mode != 'RGB':
            image = image.convert('RGB')
        return np.array(image, dtype=np.uint8)


def _scale_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map `[0, max]` of a single-channel array onto `[0, 255]`; NaN and
    infinite values become 0."""
    values = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0)
    values = np.clip(values, 0.0, None)
    peak = values.max() if values.size else 0.0
    if peak > 0:
        values = values * (255.0 / peak)
    return np.rint(values).astype(np.uint8)
