"""Checks of single COCO records: ids, boxes, polygons and RLE masks.

Every check runs in Python before any value reaches pycocotools, because
its C decoders accept malformed input without complaint. For example,
`frPyObjects` takes a 4-number polygon for a box and decodes a truncated
RLE string into a wrong mask.

A check returns a list of problem texts (empty when the value is fine).
Each text states what is wrong and what is accepted. The caller adds the
file, image and annotation it belongs to.
"""
import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Optional

# A polygon ring needs three points to enclose an area.
MIN_RING_NUMBERS = 6

# COCO's compressed RLE writes each count in 5-bit groups, offset by this
# character code so that the string stays printable.
_RLE_CHAR_OFFSET = 48
_RLE_CHAR_LIMIT = _RLE_CHAR_OFFSET + 64


# Kinds of problems, by the part of a record that is wrong; reports group
# problems by kind.
PROBLEM_IMAGE_RECORD = 'invalid image record'
PROBLEM_IMAGE_FILE = 'missing or unreadable image file'
PROBLEM_IMAGE_SIZE = 'image width and height'
PROBLEM_IMAGE_ID = 'duplicate image id'
PROBLEM_ANNOTATION_RECORD = 'invalid annotation record'
PROBLEM_ANNOTATION_ID = 'invalid or duplicate annotation id'
PROBLEM_REFERENCE = 'unknown image or category'
PROBLEM_ISCROWD = 'invalid iscrowd'
PROBLEM_SEGMENTATION = 'invalid segmentation or mask file'
PROBLEM_BOX = 'invalid box'


@dataclass(frozen=True)
class AnnotationProblem:
    """One invalid record of an annotation file.

    `image_index` and `annotation_index` are positions in the file's
    `images` and `annotations` lists. They identify the record even when
    ids repeat, so that `on_bad_annotation='skip'` drops exactly it.
    `kind` is one of the `PROBLEM_*` names above.
    """

    message: str
    kind: str = PROBLEM_ANNOTATION_RECORD
    image_id: Any = None
    file_name: Optional[str] = None
    annotation_id: Any = None
    image_index: Optional[int] = None
    annotation_index: Optional[int] = None

    def describe(self) -> str:
        """Format the problem as one line naming the image and annotation."""
        where = []
        if self.file_name is not None:
            where.append(f'image {self.image_id!r} ({self.file_name})')
        elif self.image_id is not None:
            where.append(f'image {self.image_id!r}')
        if self.annotation_index is not None:
            where.append(f'annotation {self.annotation_id!r}')
        prefix = ', '.join(where) if where else 'file'
        return f'{prefix}: {self.message}'


def is_number(value: Any) -> bool:
    """Return whether `value` is a real number (bool excluded)."""
    value_type = type(value)
    if value_type is float or value_type is int:  # fast path for JSON numbers
        return True
    return isinstance(value, Real) and not isinstance(value, bool)


def are_finite_numbers(values: list) -> bool:
    """Return whether every value is a finite real number (bool excluded)."""
    for value in values:
        if type(value) is int:
            continue
        if not is_number(value) or not math.isfinite(value):
            return False
    return True


def is_record_id(value: Any) -> bool:
    """Return whether `value` can be a COCO id: an int or a non-empty string."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value != '')


def check_box(bbox: Any) -> list[str]:
    """Check a COCO box `[x, y, width, height]` before it is clipped."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return [f'bbox {bbox!r} is invalid; expected [x, y, width, height] '
                'with 4 numbers']
    if not are_finite_numbers(bbox):
        return [f'bbox {list(bbox)} contains a value that is not a finite '
                'number; expected 4 finite numbers']
    width, height = bbox[2], bbox[3]
    if width <= 0 or height <= 0:
        return [f'bbox {list(bbox)} has zero or negative width or height; '
                'both must be greater than 0']
    return []


def clip_box(bbox: list, image_width: int,
             image_height: int) -> Optional[list[float]]:
    """Clip a checked COCO box to the image.

    Returns:
        The clipped box as `[x1, y1, x2, y2]`, or None when no part of the
        box lies inside the image.
    """
    x, y, width, height = (float(value) for value in bbox)
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + width, float(image_width)), min(y + height, float(image_height))
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2, y2]


def check_polygons(segmentation: list, image_width: Optional[int] = None,
                   image_height: Optional[int] = None) -> list[str]:
    """Check a polygon segmentation: a list of rings `[x1, y1, x2, y2, ...]`.

    With the image size given, every point must also lie within one image
    width and height of the image. Points further out come from a wrong
    coordinate system or a corrupt value, not from a drawing slip.
    """
    problems = []
    for ring_index, ring in enumerate(segmentation):
        if not isinstance(ring, (list, tuple)):
            problems.append(
                f'segmentation ring {ring_index} is {type(ring).__name__} '
                f'{ring!r}; a polygon segmentation is a list of rings, each a '
                'list [x1, y1, x2, y2, ...]')
            continue
        if len(ring) % 2:
            problems.append(
                f'polygon ring {ring_index} has an odd number of coordinates '
                f'({len(ring)}); a ring is a list of x, y pairs')
        elif len(ring) < MIN_RING_NUMBERS:
            problems.append(
                f'polygon ring {ring_index} has {len(ring)} numbers; a ring '
                f'needs at least {MIN_RING_NUMBERS} numbers (3 points)')
        if not are_finite_numbers(ring):
            problems.append(
                f'polygon ring {ring_index} contains a value that is not a '
                'finite number; coordinates must be finite numbers')
        elif image_width is not None and ring:
            problems += _check_ring_extent(ring_index, ring, image_width, image_height)
    return problems


def _check_ring_extent(ring_index: int, ring: list, image_width: int,
                       image_height: int) -> list[str]:
    xs, ys = ring[0::2], ring[1::2]
    if min(xs) >= -image_width and max(xs) <= 2 * image_width \
            and min(ys) >= -image_height and max(ys) <= 2 * image_height:
        return []
    return [f'polygon ring {ring_index} reaches x from {min(xs)} to {max(xs)} and y from '
            f'{min(ys)} to {max(ys)}, far outside the {image_width}x{image_height} image; '
            'coordinates must be pixels, within one image size of the image']


def check_rle(rle: dict, image_height: int, image_width: int) -> list[str]:
    """Check an RLE segmentation, uncompressed (list) or compressed (string).

    The counts must cover exactly `size[0] * size[1]` pixels, and `size` must
    be the image's `[height, width]`.
    """
    size = rle.get('size')
    counts = rle.get('counts')
    valid_size = (isinstance(size, (list, tuple)) and len(size) == 2
                  and all(isinstance(value, int) and not isinstance(value, bool)
                          for value in size))
    if not valid_size:
        return [f'RLE size {size!r} is invalid; expected [height, width] '
                'as two integers']
    if list(size) != [image_height, image_width]:
        return [f'RLE size {list(size)} does not match the image size '
                f'[{image_height}, {image_width}] ([height, width])']

    if isinstance(counts, str):
        try:
            decoded_counts = decode_rle_string(counts)
        except ValueError as err:
            return [f'compressed RLE counts are invalid: {err}']
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(value, int) and not isinstance(value, bool)
                   and value >= 0 for value in counts):
            return ['uncompressed RLE counts must be non-negative integers']
        decoded_counts = list(counts)
    else:
        return [f'RLE counts of type {type(counts).__name__} are invalid; '
                'expected a list of integers or a compressed string']

    covered = sum(decoded_counts)
    if covered != image_height * image_width:
        return [f'RLE counts cover {covered} pixels but size {list(size)} has '
                f'{image_height * image_width}; the counts must cover every '
                'pixel once']
    return []


def decode_rle_string(text: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each count is written as 5-bit groups, least significant first. The
    0x20 bit of a character marks that another group follows, and the 0x10
    bit of the last group is the sign. From the fourth count on, the string
    stores the difference to the count two places earlier.

    Raises:
        ValueError: on a character outside the encoding, a truncated count
            or a negative run length.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = 0
        shift = 0
        while True:
            if position >= len(text):
                raise ValueError('the string ends inside a count')
            code = ord(text[position])
            if not _RLE_CHAR_OFFSET <= code < _RLE_CHAR_LIMIT:
                raise ValueError(f'character {text[position]!r} at position '
                                 f'{position} is outside the RLE alphabet')
            group = code - _RLE_CHAR_OFFSET
            position += 1
            value |= (group & 0x1F) << shift
            shift += 5
            if not group & 0x20:
                if group & 0x10:
                    value -= 1 << shift
                break
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise ValueError(f'run {len(counts)} has negative length {value}')
        counts.append(value)
    return counts
