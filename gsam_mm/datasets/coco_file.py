"""Load a COCO instance-segmentation file and validate every record.

The dataset, the metric and preflight tools all call
`load_coco_annotations`, so they agree on which records exist, which label
each category gets and which regions are ignored.

Validation reads the JSON once and the header of every image file. Pixels
are not decoded. All problems are collected first, so that one
`AnnotationError` lists everything that is wrong.

Rules, each broken one a problem of its record:

- image: unique id. The file exists under the image folder and its header
  is readable. Width and height are positive integers equal to the size
  after EXIF orientation, or to the stored size (the image is then read
  without EXIF rotation), or both are absent and read from the header.
- annotation: unique id. `image_id` and `category_id` name existing
  records. `bbox` is 4 finite numbers with positive width and height that
  overlap the image, and the part outside is clipped. `iscrowd` is 0 or 1.
  At most one of `segmentation` and `mask_path` is given.
- polygon ring: an even count of at least 6 finite numbers.
- RLE: `size` equals the image's `[height, width]` and the counts cover
  every pixel exactly once.
- `mask_path`: an existing file with the image's size.
- categories (raised in both `on_bad_annotation` modes): unique
  ids, and distinct, non-empty prompt texts.
"""
import json
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from PIL import UnidentifiedImageError

from ..errors import AnnotationError, ConfigError
from ..fields import IGNORE_LABEL, MASK_PATH
from .annotation_checks import (PROBLEM_ANNOTATION_ID, PROBLEM_ANNOTATION_RECORD, PROBLEM_BOX,
                                PROBLEM_IMAGE_FILE, PROBLEM_IMAGE_ID, PROBLEM_IMAGE_RECORD,
                                PROBLEM_IMAGE_SIZE, PROBLEM_ISCROWD, PROBLEM_REFERENCE,
                                PROBLEM_SEGMENTATION, AnnotationProblem, is_record_id)
from .annotation_fields import parse_box, parse_mask
from .categories import CategoryTable, resolve_categories
from .images import ImageHeader, read_image_header
from .masks import Segmentation, box_to_polygon

ON_BAD_ANNOTATION_CHOICES = ('error', 'skip')

# Reasons why an instance is an ignore region instead of a training target.
IGNORE_CROWD = 'crowd'
IGNORE_MARKED = 'ignore'
IGNORE_PLACEHOLDER = 'placeholder'


@dataclass
class InstanceRecord:
    """One validated annotation.

    `label` is None for a category left out by a `classes` selection and
    `IGNORE_LABEL` for a placeholder category. Exactly one of `mask` and
    `mask_path` is set; an annotation without a mask gets its clipped box
    as a polygon (`mask_from_box`).
    """

    annotation_id: Any
    image_id: Any
    category_id: Any
    label: Optional[int]
    box: list[float]
    ignore_reason: Optional[str] = None
    mask: Optional[Segmentation] = None
    mask_path: Optional[str] = None
    clipped: bool = False
    mask_from_box: bool = False
    box_from_mask: bool = False

    def to_instance(self) -> dict:
        """Return the instance dict that mmdet's `LoadAnnotations` reads."""
        instance = {'bbox': list(self.box), 'bbox_label': self.label,
                    'ignore_flag': int(self.ignore_reason is not None)}
        if self.mask_path is not None:
            instance[MASK_PATH] = self.mask_path
        else:
            instance['mask'] = self.mask
        return instance


@dataclass
class ImageRecord:
    """One validated image with its labelled and ignored instances."""

    image_id: Any
    file_name: str
    path: str
    width: int
    height: int
    instances: list[InstanceRecord] = field(default_factory=list)
    size_from_header: bool = False
    apply_exif: bool = True
    mode: Optional[str] = None


@dataclass
class CocoAnnotations:
    """The validated content of one annotation file.

    Attributes:
        skipped: problems whose records were dropped under
            `on_bad_annotation='skip'` (empty under 'error').
        num_file_images: image records in the file.
        num_file_annotations: annotation records in the file.
        num_unselected: annotations dropped because their category is not
            in the configured classes.
    """

    ann_file: str
    img_dir: str
    images: list[ImageRecord]
    categories: CategoryTable
    skipped: list[AnnotationProblem] = field(default_factory=list)
    num_file_images: int = 0
    num_file_annotations: int = 0
    num_unselected: int = 0

    def iter_instances(self):
        """Yield every kept instance of every image."""
        for image in self.images:
            yield from image.instances

    def num_training_targets(self) -> int:
        """Return the number of kept instances that are not ignore regions."""
        return sum(record.ignore_reason is None for record in self.iter_instances())

    def nothing_to_train_on(self) -> Optional[str]:
        """Return why a training set made of this file would have no target
        although the file has annotations, or None.

        A file without any annotation record (negative images only) passes.
        """
        if not self.num_file_annotations or self.num_training_targets():
            return None
        reasons = [f'{self.num_file_annotations} annotation records in the file']
        if self.skipped:
            reasons.append(f"{len(self.skipped)} invalid records dropped by "
                           "on_bad_annotation='skip'")
        if self.num_unselected:
            reasons.append(f'{self.num_unselected} of categories left out by `classes`')
        return (f'{self.ann_file}: nothing to train on, every kept annotation is an ignore '
                f'region ({"; ".join(reasons)}); a training set needs at least one object')


def load_coco_annotations(ann_file: str, img_dir: str, *,
                          classes: Optional[Sequence[str]] = None,
                          category_ids: Optional[Sequence[Any]] = None,
                          on_bad_annotation: str = 'error',
                          check_image_files: bool = True,
                          progress: Optional[Callable[[list], Iterable]] = None,
                          prompt_problems: Optional[list[str]] = None
                          ) -> CocoAnnotations:
    """Read, validate and convert a COCO file.

    Args:
        ann_file: path of the COCO JSON file.
        img_dir: folder that image `file_name`s and annotation `mask_path`s
            are relative to.
        classes: category names from the config (see `resolve_categories`).
        category_ids: category ids to label, in label order.
        on_bad_annotation: 'error' raises one `AnnotationError` listing
            every invalid record. 'skip' drops invalid images (with their
            annotations) and invalid annotations, and reports them in
            `CocoAnnotations.skipped`.
        check_image_files: whether image files are checked: existence,
            readable header, and width and height against the header. Files
            are still needed for images without width and height.
        progress: wraps the list of image records while their files are
            checked, for example `tqdm`.
        prompt_problems: collects empty or shared category prompt texts
            instead of raising (see `resolve_categories`).

    Raises:
        AnnotationError: on invalid records under 'error', and always on a
            file that is not COCO JSON or has invalid categories.
        ConfigError: on an invalid `on_bad_annotation`, or `classes` that do
            not fit the file.
    """
    check_on_bad_annotation(on_bad_annotation)
    content = _read_json(ann_file)
    raw_annotations = content.get('annotations', [])
    categories = resolve_categories(ann_file, content.get('categories'), raw_annotations,
                                    classes=classes, category_ids=category_ids,
                                    prompt_problems=prompt_problems)

    raw_images = content['images'] if progress is None else progress(content['images'])
    images, problems = _check_images(raw_images, img_dir, check_image_files)
    instances, annotation_problems = _check_annotations(raw_annotations, images,
                                                        categories, img_dir)
    problems += annotation_problems
    if problems and on_bad_annotation == 'error':
        raise AnnotationError(format_problems(ann_file, problems))

    result = CocoAnnotations(ann_file=ann_file, img_dir=img_dir, images=[],
                             categories=categories, skipped=problems,
                             num_file_images=len(content['images']),
                             num_file_annotations=len(raw_annotations))
    _assemble(result, images, instances, problems)
    return result


def join_data_root(data_root: str, path: str) -> str:
    """Join a config path with its `data_root`, as MMEngine's BaseDataset
    does: absolute paths and an empty root leave the path unchanged."""
    if data_root and not osp.isabs(path):
        return osp.join(data_root, path)
    return path


def check_on_bad_annotation(value: str) -> None:
    """Raise `ConfigError` unless `value` is one of `ON_BAD_ANNOTATION_CHOICES`."""
    if value not in ON_BAD_ANNOTATION_CHOICES:
        raise ConfigError(f'on_bad_annotation must be one of {ON_BAD_ANNOTATION_CHOICES}, '
                          f'got {value!r}')


def _read_json(ann_file: str) -> dict:
    """Read the file and check its top-level structure."""
    if not osp.isfile(ann_file):
        raise AnnotationError(f'annotation file not found: {ann_file}')
    try:
        with open(ann_file, encoding='utf-8') as file:
            content = json.load(file)
    except json.JSONDecodeError as err:
        raise AnnotationError(f'{ann_file} is not valid JSON: {err}') from err
    if not isinstance(content, dict) or not isinstance(content.get('images'), list):
        raise AnnotationError(f'{ann_file} is not a COCO file; expected a JSON object '
                              'with an "images" list')
    if not isinstance(content.get('annotations', []), list):
        raise AnnotationError(f'{ann_file}: "annotations" must be a list')
    return content


@dataclass
class _ImageEntry:
    """An image record being validated, with its position in the file."""

    index: int
    record: Optional[ImageRecord]
    bad: bool = False


def _check_images(raw_images: Iterable, img_dir: str,
                  check_image_files: bool) -> tuple[dict, list[AnnotationProblem]]:
    """Check every image record.

    Returns:
        A mapping from image id to the list of `_ImageEntry`s with that id
        (more than one when ids repeat), and the problems found.
    """
    entries_by_id: dict[Any, list[_ImageEntry]] = {}
    problems = []
    for index, raw in enumerate(raw_images):
        entry, entry_problems = _check_image(index, raw, img_dir, check_image_files)
        problems += entry_problems
        if entry is not None:
            entries_by_id.setdefault(entry.record.image_id, []).append(entry)

    for image_id, entries in entries_by_id.items():
        if len(entries) < 2:
            continue
        file_names = ', '.join(entry.record.file_name for entry in entries)
        for entry in entries:
            entry.bad = True
            problems.append(AnnotationProblem(
                f'image id {image_id!r} is used by {len(entries)} images ({file_names}); '
                'image ids must be unique', kind=PROBLEM_IMAGE_ID, image_id=image_id,
                file_name=entry.record.file_name, image_index=entry.index))
    return entries_by_id, problems


def _check_image(index: int, raw: Any, img_dir: str,
                 check_image_files: bool) -> tuple[Optional[_ImageEntry], list[AnnotationProblem]]:
    """Check one image record; return None when it has no usable id or file name."""
    if not isinstance(raw, dict) or not is_record_id(raw.get('id')) \
            or not isinstance(raw.get('file_name'), str) or not raw['file_name']:
        summary = raw
        if isinstance(raw, dict):
            summary = {key: raw.get(key) for key in ('id', 'file_name')}
        return None, [AnnotationProblem(
            f'image record {index} ({summary!r}) is invalid; expected an integer or '
            'string "id" and a non-empty "file_name"', kind=PROBLEM_IMAGE_RECORD,
            image_index=index)]

    image_id, file_name = raw['id'], raw['file_name']
    path = osp.join(img_dir, file_name)

    def problem(message: str, kind: str) -> AnnotationProblem:
        return AnnotationProblem(message, kind=kind, image_id=image_id, file_name=file_name,
                                 image_index=index)

    problems = []
    width, height = raw.get('width'), raw.get('height')
    size_from_header = width is None or height is None
    exists = osp.isfile(path)
    if not exists and (check_image_files or size_from_header):
        problems.append(problem(
            f'image file not found: {path} (file_name is resolved against the image '
            f'folder {img_dir!r}: data_root joined with data_prefix["img"] of the '
            'dataset or metric config)', PROBLEM_IMAGE_FILE))

    header = None
    if exists and (check_image_files or size_from_header):
        try:
            header = read_image_header(path)
        except (OSError, UnidentifiedImageError) as err:
            problems.append(problem(f'cannot read the image header of {path}: {err}',
                                    PROBLEM_IMAGE_FILE))
    if size_from_header and header is not None:
        width, height = header.size
    valid_size = all(isinstance(value, int) and not isinstance(value, bool) and value > 0
                     for value in (width, height))
    if not valid_size and not size_from_header:
        problems.append(problem(f'width {width!r} and height {height!r} are invalid; '
                                'expected positive integers (or leave both out to '
                                'read them from the image file)', PROBLEM_IMAGE_SIZE))
    if not valid_size:
        entry = _ImageEntry(index, ImageRecord(image_id, file_name, path, 0, 0), bad=True)
        return entry, problems

    apply_exif = True
    if header is not None and not size_from_header:
        apply_exif, size_message = match_header_size(width, height, header)
        if size_message:
            problems.append(problem(f'{path}: {size_message}', PROBLEM_IMAGE_SIZE))
    record = ImageRecord(image_id, file_name, path, width, height,
                         size_from_header=size_from_header, apply_exif=apply_exif,
                         mode=header.mode if header is not None else None)
    return _ImageEntry(index, record, bad=bool(problems)), problems


def match_header_size(width: int, height: int,
                       header: ImageHeader) -> tuple[bool, Optional[str]]:
    """Compare the file's width and height with the image header. Inference
    with an annotation file applies the same rule, so that its images are
    read as the dataset reads them.

    Returns:
        Whether to apply the EXIF orientation when reading the pixels, and a
        problem text when the sizes match neither orientation.
    """
    if (width, height) == header.size:
        return True, None
    if (width, height) == header.stored_size:
        # The annotation tool drew on the stored pixels, ignoring EXIF.
        return False, None
    header_width, header_height = header.size
    message = (f'width={width}, height={height} do not match the image, which is '
               f'{header_width}x{header_height} pixels')
    if header.size != header.stored_size:
        message += (f' after EXIF orientation {header.orientation} '
                    f'({header.stored_width}x{header.stored_height} as stored)')
    return True, message + '; fix width and height, or remove both to read them from the file'


def _check_annotations(raw_annotations: list, images: dict, categories: CategoryTable,
                       img_dir: str) -> tuple[dict, list[AnnotationProblem]]:
    """Check every annotation.

    Returns:
        A mapping from annotation index to its `InstanceRecord` (valid ones
        only), and the problems found.
    """
    labels = categories.labels_by_id()
    instances = {}
    problems = []
    indices_by_id: dict[Any, list[int]] = {}
    for index, raw in enumerate(raw_annotations):
        context = _AnnotationContext(index, raw, images)
        record, messages = _parse_annotation(raw, context.image, categories, labels,
                                             img_dir)
        problems += [context.problem(message, kind) for kind, message in messages]
        if record is not None and not messages:
            instances[index] = record
        if isinstance(raw, dict) and is_record_id(raw.get('id')):
            indices_by_id.setdefault(raw['id'], []).append(index)

    for annotation_id, indices in indices_by_id.items():
        if len(indices) < 2:
            continue
        image_ids = ', '.join(repr(raw_annotations[index].get('image_id')) for index in indices)
        positions = ', '.join(str(index) for index in indices)
        for index in indices:
            problems.append(_AnnotationContext(index, raw_annotations[index], images).problem(
                f'annotation id {annotation_id!r} is used by {len(indices)} annotations '
                f'(on images {image_ids}, at positions {positions} of the "annotations" '
                f'list; this one at {index}); annotation ids must be unique',
                PROBLEM_ANNOTATION_ID))
            instances.pop(index, None)
    return instances, problems


class _AnnotationContext:
    """Position, id and image of one annotation, used to build problem texts."""

    def __init__(self, index: int, raw: Any, images: dict) -> None:
        self.index = index
        self.annotation_id = raw.get('id') if isinstance(raw, dict) else None
        self.image_id = raw.get('image_id') if isinstance(raw, dict) else None
        entries = images.get(self.image_id) if is_record_id(self.image_id) else None
        self.image = entries[0].record if entries else None

    def problem(self, message: str, kind: str) -> AnnotationProblem:
        return AnnotationProblem(
            message, kind=kind, image_id=self.image_id,
            file_name=self.image.file_name if self.image else None,
            annotation_id=self.annotation_id, annotation_index=self.index)


def _parse_annotation(raw: Any, image: Optional[ImageRecord], categories: CategoryTable,
                      labels: dict, img_dir: str
                      ) -> tuple[Optional[InstanceRecord], list[tuple[str, str]]]:
    """Check one annotation and convert it; return its problems as
    `(kind, text)` pairs."""
    if not isinstance(raw, dict):
        return None, [(PROBLEM_ANNOTATION_RECORD,
                       f'annotation record is a {type(raw).__name__}; expected an object')]
    messages = []
    if not is_record_id(raw.get('id')):
        messages.append((PROBLEM_ANNOTATION_ID,
                         f'id {raw.get("id")!r} is invalid; expected an integer or string'))
    if image is None:
        messages.append((PROBLEM_REFERENCE,
                         f'image_id {raw.get("image_id")!r} is not the id of any image '
                         'in the "images" list'))
    category_id = raw.get('category_id')
    if not is_record_id(category_id) or category_id not in categories.known_ids:
        known = sorted(categories.known_ids, key=lambda value: (isinstance(value, str), value))
        messages.append((PROBLEM_REFERENCE,
                         f'category_id {category_id!r} is not the id of any category '
                         f'(known ids: {known})'))
        category_id = None
    ignore_reason, iscrowd_messages = _read_ignore_reason(raw, category_id, categories)
    messages += [(PROBLEM_ISCROWD, message) for message in iscrowd_messages]
    if image is None or image.width == 0:
        return None, messages

    mask, mask_path, mask_messages = parse_mask(raw, image.width, image.height, img_dir)
    messages += [(PROBLEM_SEGMENTATION, message) for message in mask_messages]
    box, clipped, box_from_mask, box_messages = parse_box(raw, mask, image.width, image.height)
    messages += [(PROBLEM_BOX, message) for message in box_messages]
    if messages:
        return None, messages

    mask_from_box = mask is None and mask_path is None
    if mask_from_box:
        # NOTE: the mask target of a box-only annotation is its box
        # rectangle, which teaches SAM rectangular masks. A warning counts them.
        mask = box_to_polygon(box)
    label = IGNORE_LABEL if ignore_reason == IGNORE_PLACEHOLDER else labels.get(category_id)
    record = InstanceRecord(raw['id'], raw['image_id'], category_id, label, box,
                            ignore_reason=ignore_reason, mask=mask, mask_path=mask_path,
                            clipped=clipped, mask_from_box=mask_from_box,
                            box_from_mask=box_from_mask)
    return record, []


def _read_ignore_reason(raw: dict, category_id: Any,
                        categories: CategoryTable) -> tuple[Optional[str], list[str]]:
    """Decide whether the annotation is an ignore region, and why."""
    iscrowd = raw.get('iscrowd', 0)
    if iscrowd not in (0, 1):  # also accepts False and True
        return None, [f'iscrowd {iscrowd!r} is invalid; expected 0 or 1']
    if category_id in categories.placeholder_ids:
        return IGNORE_PLACEHOLDER, []
    if iscrowd:
        return IGNORE_CROWD, []
    if raw.get('ignore'):
        return IGNORE_MARKED, []
    return None, []


def _assemble(result: CocoAnnotations, images: dict, instances: dict,
              problems: list[AnnotationProblem]) -> None:
    """Fill `result.images` with the kept images and instances, in file order."""
    kept_images = {image_id: entries[0].record for image_id, entries in images.items()
                   if not any(entry.bad for entry in entries)}
    bad_annotations = {problem.annotation_index for problem in problems
                       if problem.annotation_index is not None}

    for index, record in sorted(instances.items()):
        image = kept_images.get(record.image_id)
        if index in bad_annotations or image is None:
            continue
        if record.label is None:
            result.num_unselected += 1
            continue
        image.instances.append(record)

    first_index = {image_id: images[image_id][0].index for image_id in kept_images}
    result.images = sorted(kept_images.values(), key=lambda image: first_index[image.image_id])


def format_problems(ann_file: str, problems: list[AnnotationProblem]) -> str:
    """Format problems as one message: a count line, then one line each."""
    lines = [f'{ann_file}: {len(problems)} invalid record(s). Fix them, or set '
             "on_bad_annotation='skip' to drop the images and annotations involved:"]
    lines += [f'  - {problem.describe()}' for problem in problems]
    return '\n'.join(lines)
