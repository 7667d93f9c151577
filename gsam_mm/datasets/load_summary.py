"""Log what `load_coco_annotations` loaded, converted and dropped, once per file."""
import logging
from collections import Counter

from mmengine.logging import print_log

from .coco_file import IGNORE_CROWD, IGNORE_MARKED, IGNORE_PLACEHOLDER, CocoAnnotations


def log_load_summary(annotations: CocoAnnotations) -> None:
    """Log counts of images, instances and categories, and every conversion
    or drop, each as one line through MMEngine's current logger."""
    for level, message in summarize(annotations):
        print_log(message, logger='current', level=level)


def summarize(annotations: CocoAnnotations) -> list[tuple[int, str]]:
    """Return `(log level, message)` pairs describing the loaded file."""
    instances = list(annotations.iter_instances())
    ignore_counts = Counter(record.ignore_reason for record in instances)
    table = annotations.categories
    names = [category.name for category in table.selected]
    lines = [(logging.INFO,
              f'Loaded {annotations.ann_file}: {len(annotations.images)} images '
              f'from {annotations.img_dir!r}, {ignore_counts[None]} training instances, '
              f'{len(instances) - ignore_counts[None]} ignore regions, '
              f'{len(names)} categories {names}')]

    def add(count: int, message: str, level: int = logging.INFO) -> None:
        if count:
            lines.append((level, f'{annotations.ann_file}: {message}'))

    negatives = sum(1 for image in annotations.images if not image.instances)
    add(negatives, f'{negatives} images have no annotations and train as negative images')
    add(ignore_counts[IGNORE_CROWD],
        f'{ignore_counts[IGNORE_CROWD]} crowd regions (iscrowd=1) are ignore regions: '
        'not training targets, ignored in evaluation')
    add(ignore_counts[IGNORE_MARKED],
        f'{ignore_counts[IGNORE_MARKED]} annotations marked "ignore" are ignore regions')
    add(len(table.placeholders),
        f'placeholder categories {table.placeholders} are left out of the labels and '
        f'the prompt; {ignore_counts[IGNORE_PLACEHOLDER]} annotations use them and '
        'become ignore regions')
    _add_inferred_categories(annotations, lines)

    add(sum(record.clipped for record in instances),
        f'{sum(record.clipped for record in instances)} boxes extend beyond their image '
        'and were clipped to it')
    add(sum(record.box_from_mask for record in instances),
        f'{sum(record.box_from_mask for record in instances)} annotations have no bbox; '
        'it was computed from their mask')
    add(sum(record.mask_from_box for record in instances),
        f'{sum(record.mask_from_box for record in instances)} annotations have no '
        'segmentation; their box is used as the mask target', logging.WARNING)
    add(sum(image.size_from_header for image in annotations.images),
        f'{sum(image.size_from_header for image in annotations.images)} images have no '
        'width or height; both were read from the image file')
    add(annotations.num_unselected,
        f'{annotations.num_unselected} annotations of categories not in '
        'metainfo.classes were dropped')
    _add_skipped(annotations, instances, lines)
    return lines


def _add_inferred_categories(annotations: CocoAnnotations,
                             lines: list[tuple[int, str]]) -> None:
    table = annotations.categories
    if not table.inferred:
        return
    ids = [category.id for category in table.selected]
    if table.generated_names:
        names = [category.name for category in table.selected]
        lines.append((logging.WARNING,
                      f'{annotations.ann_file} has no "categories" list; category ids '
                      f'{ids} were collected from the annotations and named {names}, '
                      'which become the prompt text. Set metainfo=dict(classes=(...)) '
                      f'with {len(ids)} names, in this id order, to name them'))
    else:
        lines.append((logging.INFO,
                      f'{annotations.ann_file} has no "categories" list; category ids '
                      f'{ids} were collected from the annotations and named by '
                      'metainfo.classes in ascending id order'))


def _add_skipped(annotations: CocoAnnotations, instances: list,
                 lines: list[tuple[int, str]]) -> None:
    if not annotations.skipped:
        return
    dropped_images = annotations.num_file_images - len(annotations.images)
    dropped_annotations = (annotations.num_file_annotations - len(instances)
                           - annotations.num_unselected)
    details = '\n'.join(f'  - {problem.describe()}' for problem in annotations.skipped)
    lines.append((logging.WARNING,
                  f"{annotations.ann_file}: on_bad_annotation='skip' dropped "
                  f'{dropped_images} images and {dropped_annotations} annotations '
                  f'(annotations of dropped images included) because of '
                  f'{len(annotations.skipped)} invalid record(s):\n{details}'))
