"""Image files read with Pillow: header sizes and uint8 RGB pixels.

Both readers apply the EXIF orientation. Header sizes and decoded pixels
then agree with each other and with annotations drawn on the image as a
viewer shows it.
"""
import numpy as np
from PIL import ExifTags, Image, ImageOps

# EXIF orientations 5 to 8 rotate by 90 or 270 degrees, which swaps width
# and height.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)

# Modes whose pixels are integers wider than 8 bits or floats.
_HIGH_BIT_DEPTH_MODES = ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N', 'F')


def read_image_size(path: str) -> tuple[int, int]:
    """Read `(width, height)` from the file header, after EXIF orientation.

    Only the header is parsed; no pixels are decoded.
    """
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def read_rgb_image(path: str) -> np.ndarray:
    """Decode an image file into RGB pixels of shape (H, W, 3), dtype uint8.

    Gray and palette images are expanded to three channels and an alpha
    channel is dropped. 16-bit, 32-bit and float gray images are scaled
    linearly so that 0 stays 0 and the image's maximum becomes 255.
    Scaling by the image's maximum, not by the type's, keeps 12-bit data
    stored in 16-bit files visible (divided by 257 it would be nearly black);
    the cost is that brightness is not comparable across such images.
    """
    with Image.open(path) as image:
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
