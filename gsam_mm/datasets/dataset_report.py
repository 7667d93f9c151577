"""A preflight report on a dataset: every problem of its annotation files,
the prompt vocabulary and statistics of the data.

The files are checked by `load_coco_annotations`, the same code that builds
the training dataset, so the report predicts exactly whether a run can
start. Image headers are read, pixels are not.
"""
import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from ..errors import AnnotationError, ConfigError
from .coco_file import (IGNORE_CROWD, IGNORE_MARKED, IGNORE_PLACEHOLDER, CocoAnnotations,
                        load_coco_annotations)
from .images import describe_conversion
from .vocabulary_report import VocabularyReport


@dataclass
class DataStatistics:
    """Counts over the images and instances that training would use."""

    num_images: int = 0
    num_file_images: int = 0
    num_file_annotations: int = 0
    num_instances: int = 0
    images_without_objects: int = 0
    crowd_regions: int = 0
    marked_ignore_regions: int = 0
    placeholder_regions: int = 0
    max_instances_per_image: int = 0
    p95_instances_per_image: float = 0.0
    image_modes: dict[str, int] = field(default_factory=dict)
    images_read_without_exif: int = 0
    sizes_from_header: int = 0
    clipped_boxes: int = 0
    masks_from_boxes: int = 0
    boxes_from_masks: int = 0
    unselected_annotations: int = 0


@dataclass
class SplitReport:
    """The check of one annotation file, used by one or more splits.

    Attributes:
        names: the splits that use the file ('train', 'val', 'test').
        error: a problem that stops the file from loading at all (not COCO
            JSON, invalid categories, classes that do not fit).
        problems: one dict per invalid record: kind, image_id, file_name,
            annotation_id and message.
        no_targets: for a training file, why no object is left to train
            on once invalid records are dropped; None when some are.
        category_problems: categories whose prompt texts are empty or
            shared; they stop training, and the records are checked anyway.
    """

    names: list[str]
    ann_file: str
    img_dir: str
    on_bad_annotation: str
    error: Optional[str] = None
    problems: list[dict] = field(default_factory=list)
    no_targets: Optional[str] = None
    category_problems: list[str] = field(default_factory=list)
    statistics: DataStatistics = field(default_factory=DataStatistics)

    @property
    def blocks_training(self) -> bool:
        """Whether building this split's dataset would raise."""
        if self.error is not None or self.no_targets is not None or self.category_problems:
            return True
        return bool(self.problems) and self.on_bad_annotation == 'error'


@dataclass
class DatasetReport:
    """Everything `tools/check_dataset.py` reports."""

    splits: list[SplitReport]
    vocabulary: Optional[VocabularyReport] = None

    @property
    def can_train(self) -> bool:
        """Whether a training run on this data would get past its checks."""
        if any(split.blocks_training for split in self.splits):
            return False
        return self.vocabulary is None or self.vocabulary.error is None

    def to_dict(self) -> dict:
        """Return the report as JSON-serializable data."""
        return {'can_train': self.can_train,
                'splits': [dataclasses.asdict(split) for split in self.splits],
                'vocabulary': dataclasses.asdict(self.vocabulary) if self.vocabulary else None}


def check_split(names: list[str], ann_file: str, img_dir: str, *,
                classes: Optional[Sequence[str]] = None, on_bad_annotation: str = 'error',
                progress: Optional[Callable[[list], Iterable]] = None
                ) -> tuple[SplitReport, Optional[CocoAnnotations]]:
    """Check one annotation file and gather its statistics.

    Every record is checked even when `on_bad_annotation` is 'error', so
    the report lists all problems; the valid records give the statistics.

    Returns:
        The report and the loaded annotations (None when the file could not
        be loaded at all).
    """
    report = SplitReport(names=list(names), ann_file=ann_file, img_dir=img_dir,
                         on_bad_annotation=on_bad_annotation)
    try:
        annotations = load_coco_annotations(ann_file, img_dir, classes=classes,
                                            on_bad_annotation='skip', progress=progress,
                                            prompt_problems=report.category_problems)
    except (AnnotationError, ConfigError) as err:
        report.error = str(err)
        return report, None

    report.problems = [{'kind': problem.kind, 'image_id': problem.image_id,
                        'file_name': problem.file_name, 'annotation_id': problem.annotation_id,
                        'message': problem.message, 'description': problem.describe()}
                       for problem in annotations.skipped]
    report.statistics = collect_statistics(annotations)
    # Under 'error' the invalid records stop a run first; fixing them may
    # bring targets back.
    if 'train' in report.names and (on_bad_annotation == 'skip' or not report.problems):
        report.no_targets = annotations.nothing_to_train_on()
    return report, annotations


def collect_statistics(annotations: CocoAnnotations) -> DataStatistics:
    """Count images, instances, ignore regions, image modes and conversions."""
    instances = list(annotations.iter_instances())
    ignore_counts = Counter(record.ignore_reason for record in instances)
    per_image = sorted(sum(record.ignore_reason is None for record in image.instances)
                       for image in annotations.images)
    return DataStatistics(
        num_images=len(annotations.images),
        num_file_images=annotations.num_file_images,
        num_file_annotations=annotations.num_file_annotations,
        num_instances=ignore_counts[None],
        images_without_objects=sum(count == 0 for count in per_image),
        crowd_regions=ignore_counts[IGNORE_CROWD],
        marked_ignore_regions=ignore_counts[IGNORE_MARKED],
        placeholder_regions=ignore_counts[IGNORE_PLACEHOLDER],
        max_instances_per_image=per_image[-1] if per_image else 0,
        p95_instances_per_image=_percentile(per_image, 95),
        image_modes=dict(Counter(image.mode or 'unknown' for image in annotations.images)),
        images_read_without_exif=sum(not image.apply_exif for image in annotations.images),
        sizes_from_header=sum(image.size_from_header for image in annotations.images),
        clipped_boxes=sum(record.clipped for record in instances),
        masks_from_boxes=sum(record.mask_from_box for record in instances),
        boxes_from_masks=sum(record.box_from_mask for record in instances),
        unselected_annotations=annotations.num_unselected)


def _percentile(sorted_values: list[int], percent: float) -> float:
    """Linear-interpolated percentile of ascending values, 0 for none."""
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * percent / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = position - lower
    return sorted_values[lower] * (1 - fraction) + sorted_values[upper] * fraction


# ------------------------------------------------------------------ text
def format_report(report: DatasetReport) -> str:
    """Format the report as text: one section per file, then the vocabulary
    and the verdict."""
    lines = []
    for split in report.splits:
        lines += _format_split(split)
        lines.append('')
    if report.vocabulary is not None:
        lines += _format_vocabulary(report.vocabulary)
        lines.append('')
    lines += _format_verdict(report)
    return '\n'.join(lines)


def _format_split(split: SplitReport) -> list[str]:
    lines = [f'== {", ".join(split.names)}: {split.ann_file} (images in {split.img_dir})']
    if split.error is not None:
        return lines + ['  cannot load the file:', *_indent(split.error, '    ')]

    stats = split.statistics
    lines += [
        f'  images: {stats.num_images} of {stats.num_file_images} in the file, '
        f'{stats.images_without_objects} without objects (negative images)',
        f'  instances: {stats.num_instances} training targets from '
        f'{stats.num_file_annotations} annotations; per image max '
        f'{stats.max_instances_per_image}, p95 {stats.p95_instances_per_image:.1f}',
        f'  ignore regions: {stats.crowd_regions} crowd (iscrowd=1), '
        f'{stats.marked_ignore_regions} marked "ignore", {stats.placeholder_regions} of '
        'placeholder categories',
    ]
    for mode, count in sorted(stats.image_modes.items()):
        lines.append(f'  image mode {mode}: {count} images, {describe_conversion(mode)}')
    conversions = [
        (stats.images_read_without_exif, 'images have width and height of the stored '
         'pixels, not of the EXIF-rotated ones, and are read without rotation'),
        (stats.sizes_from_header, 'images have no width or height; read from the file'),
        (stats.clipped_boxes, 'boxes extend beyond their image and are clipped'),
        (stats.masks_from_boxes, 'annotations have no segmentation; their box is the mask'),
        (stats.boxes_from_masks, 'annotations have no bbox; it is computed from the mask'),
        (stats.unselected_annotations, 'annotations of categories not in the configured '
         'classes are left out'),
    ]
    lines += [f'  {count} {text}' for count, text in conversions if count]
    if split.category_problems:
        lines.append(f'  category problems: {len(split.category_problems)} (training stops '
                     'on them)')
        lines += [f'    - {problem}' for problem in split.category_problems]
    if split.no_targets is not None:
        lines += ['  no training targets:', *_indent(split.no_targets, '    ')]
    lines += _format_problems(split)
    return lines


def _format_problems(split: SplitReport) -> list[str]:
    if not split.problems:
        return ['  problems: none']
    action = ('training stops on them' if split.on_bad_annotation == 'error'
              else "on_bad_annotation='skip' drops the records involved")
    lines = [f'  problems: {len(split.problems)} ({action})']
    by_kind: dict[str, list[dict]] = {}
    for problem in split.problems:
        by_kind.setdefault(problem['kind'], []).append(problem)
    for kind, problems in by_kind.items():
        lines.append(f'    {kind} ({len(problems)}):')
        lines += [f'      - {problem["description"]}' for problem in problems]
    return lines


def _format_vocabulary(vocabulary: VocabularyReport) -> list[str]:
    lines = [f'== vocabulary: {len(vocabulary.categories)} categories']
    if vocabulary.caption_tokens is not None:
        budget = ''
        if vocabulary.max_prompt_tokens != vocabulary.max_text_len:
            budget = f', caption budget {vocabulary.max_prompt_tokens}'
        lines.append(f'  one caption of all categories: {vocabulary.caption_tokens} tokens '
                     f'(text encoder limit {vocabulary.max_text_len}{budget})')
    if len(vocabulary.captions) > 1:
        lines.append(f'  the prompt is split into {len(vocabulary.captions)} captions; '
                     'prediction runs them all and merges the scores:')
        for index, caption in enumerate(vocabulary.captions):
            first, last = caption['labels']
            lines.append(f'    caption {index}: labels {first}-{last}, '
                         f'{caption["num_tokens"]} tokens')
    if vocabulary.note:
        lines.append(f'  token counts skipped: {vocabulary.note}')
    if vocabulary.error:
        lines += ['  the prompt cannot be built:', *_indent(vocabulary.error, '    ')]
    lines += _format_category_table(vocabulary)
    for shorter, longer in vocabulary.contained_texts:
        lines.append(f'  {shorter!r} occurs inside {longer!r}: each keeps its own tokens, '
                     'but expect the detector to confuse them at first')
    for category_id, name in vocabulary.placeholders:
        lines.append(f'  placeholder category {category_id!r} ({name!r}) is left out of the '
                     'labels and the prompt')
    return lines


def _format_category_table(vocabulary: VocabularyReport) -> list[str]:
    """Format one row per category: label, id, name, prompt text, caption
    and token span, and training instances per split."""
    split_names = list(vocabulary.categories[0].instances) if vocabulary.categories else []
    rows = [['label', 'id', 'name', 'prompt text', 'caption:tokens', *split_names]]
    for entry in vocabulary.categories:
        tokens = '-' if entry.caption is None else \
            f'{entry.caption}:{entry.tokens[0]}-{entry.tokens[1]}'
        rows.append([str(entry.label), str(entry.id), entry.name, entry.text, tokens,
                     *(str(entry.instances[name]) for name in split_names)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ['  ' + '  '.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows]


def _format_verdict(report: DatasetReport) -> list[str]:
    if report.can_train:
        skipped = sum(len(split.problems) for split in report.splits)
        verdict = [f'Training can start: {skipped} invalid records are dropped by '
                   "on_bad_annotation='skip'." if skipped else 'Training can start.']
        if report.vocabulary is not None and report.vocabulary.note:
            verdict.append('The prompt was not checked against the token limit, because the '
                           'tokenizer could not be loaded (see "token counts skipped" above); '
                           'training loads the text encoder and checks it then.')
        return verdict
    blocking = [split for split in report.splits if split.blocks_training]
    count = sum(len(split.problems) for split in blocking
                if split.on_bad_annotation == 'error')
    reasons = []
    if count:
        reasons.append(f"fix the {count} invalid records above, or set "
                       "dataset.on_bad_annotation='skip' to drop them")
    if any(split.error for split in blocking):
        reasons.append('fix the file errors above')
    if any(split.category_problems for split in blocking):
        reasons.append('fix the category problems above')
    if any(split.no_targets for split in blocking):
        reasons.append('give the training set at least one object')
    if report.vocabulary is not None and report.vocabulary.error:
        reasons.append('fix the prompt error above')
    return [f'Training cannot start: {"; ".join(reasons)}.']


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in text.splitlines()]

