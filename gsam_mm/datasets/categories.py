"""Categories of a COCO file turned into training labels and prompt texts.

Label k is the k-th selected category. Placeholder categories (see
`fields.PLACEHOLDER_CATEGORY_NAMES`) never get a label; their annotations
become ignore regions.
"""
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from ..errors import AnnotationError, ConfigError
from ..fields import PLACEHOLDER_CATEGORY_NAMES
from ..prompt import find_duplicate_texts, normalize_category_name
from .annotation_checks import is_record_id

# Name given to a category when the file has no `categories` list and the
# config gives no names.
PLACEHOLDER_NAME_FORMAT = 'category_{}'


@dataclass(frozen=True)
class Category:
    """A category that has a label: its COCO id, file name and prompt text."""

    id: Any
    name: str
    text: str


@dataclass
class CategoryTable:
    """The categories of one annotation file.

    Attributes:
        selected: categories with a label, in label order.
        placeholders: `(id, name)` of placeholder categories.
        known_ids: every category id an annotation may refer to, including
            placeholder ids and ids left out by a `classes` selection.
        inferred: true when the file has no `categories` list and the ids
            were collected from the annotations.
        generated_names: true when names were made up as `category_<id>`.
    """

    selected: list[Category]
    placeholders: list[tuple[Any, str]] = field(default_factory=list)
    known_ids: set = field(default_factory=set)
    inferred: bool = False
    generated_names: bool = False

    def labels_by_id(self) -> dict:
        """Return the mapping from category id to label."""
        return {category.id: label for label, category in enumerate(self.selected)}

    @property
    def placeholder_ids(self) -> set:
        """Ids of placeholder categories."""
        return {category_id for category_id, _ in self.placeholders}


def resolve_categories(ann_file: str, raw_categories: Optional[list],
                       raw_annotations: list, *,
                       classes: Optional[Sequence[str]] = None,
                       category_ids: Optional[Sequence[Any]] = None,
                       prompt_problems: Optional[list[str]] = None) -> CategoryTable:
    """Select the labelled categories of a file and check their prompt texts.

    Args:
        ann_file: annotation file, named in error messages.
        raw_categories: the file's `categories` list, or None when absent.
        raw_annotations: the file's annotations, used to infer category ids
            when `raw_categories` is None.
        classes: category names from the config. With a `categories` list
            they select categories by name, in this order. Without one they
            name the inferred ids, sorted ascending, and their number must
            match.
        category_ids: ids to select, in label order. Takes precedence over
            `classes` for the selection; used by the metric to reproduce
            a dataset's labels exactly.
        prompt_problems: when given, empty or shared prompt texts are
            appended to it instead of raising, so that a report can go on
            to check the annotations (each category keeps its own label).

    Raises:
        AnnotationError: on invalid or duplicate category records, when no
            category is left, or when two selected categories have the same
            prompt text and `prompt_problems` is None.
        ConfigError: when `classes` or `category_ids` do not fit the file.
    """
    if raw_categories is None:
        table = _infer_categories(ann_file, raw_annotations, classes, category_ids)
    else:
        table = _read_categories(ann_file, raw_categories, classes, category_ids)
    _check_prompt_texts(ann_file, table.selected, prompt_problems)
    return table


def _read_categories(ann_file: str, raw_categories: list,
                     classes: Optional[Sequence[str]],
                     category_ids: Optional[Sequence[Any]]) -> CategoryTable:
    """Build the table from the file's own `categories` list."""
    records = _check_category_records(ann_file, raw_categories)
    placeholders = [(category_id, name) for category_id, name in records
                    if name.strip() in PLACEHOLDER_CATEGORY_NAMES]
    candidates = [Category(category_id, name, normalize_category_name(name))
                  for category_id, name in records
                  if name.strip() not in PLACEHOLDER_CATEGORY_NAMES]

    if category_ids is not None:
        selected = _select_by_id(ann_file, candidates, category_ids)
    elif classes is not None:
        selected = _select_by_name(ann_file, candidates, classes)
    else:
        selected = candidates
    return CategoryTable(selected=selected, placeholders=placeholders,
                         known_ids={category_id for category_id, _ in records})


def _check_category_records(ann_file: str, raw_categories: list) -> list[tuple[Any, str]]:
    """Return `(id, name)` of every category, raising on any invalid record."""
    if not isinstance(raw_categories, list):
        raise AnnotationError(f'{ann_file}: "categories" is a '
                              f'{type(raw_categories).__name__}; expected a list '
                              'of {"id": ..., "name": ...} records')
    problems = []
    records = []
    for index, raw in enumerate(raw_categories):
        if not isinstance(raw, dict) or not is_record_id(raw.get('id')) \
                or not isinstance(raw.get('name'), str):
            problems.append(f'category record {index} ({raw!r}) is invalid; '
                            'expected an integer or string "id" and a string "name"')
            continue
        records.append((raw['id'], raw['name']))

    names_by_id: dict[Any, list[str]] = {}
    for category_id, name in records:
        names_by_id.setdefault(category_id, []).append(name)
    for category_id, names in names_by_id.items():
        if len(names) > 1:
            problems.append(f'category id {category_id!r} is used by {len(names)} '
                            f'categories ({", ".join(names)}); category ids must be unique')
    if problems:
        raise AnnotationError(_format_category_problems(ann_file, problems))
    return records


def _infer_categories(ann_file: str, raw_annotations: list,
                      classes: Optional[Sequence[str]],
                      category_ids: Optional[Sequence[Any]]) -> CategoryTable:
    """Build the table from the category ids that annotations use."""
    found_ids = {raw.get('category_id') for raw in raw_annotations
                 if isinstance(raw, dict) and is_record_id(raw.get('category_id'))}
    known_ids = sorted(found_ids, key=lambda value: (isinstance(value, str), value))
    if category_ids is not None:
        missing = [value for value in category_ids if value not in found_ids]
        if missing:
            raise ConfigError(f'{ann_file}: category ids {missing} are requested '
                              f'but no annotation uses them (ids in use: {known_ids})')
        known_ids = list(category_ids)

    generated_names = classes is None
    if classes is None:
        names = [PLACEHOLDER_NAME_FORMAT.format(value) for value in known_ids]
    else:
        names = list(classes)
        if len(names) != len(known_ids):
            raise ConfigError(
                f'{ann_file} has no "categories" list and its annotations use '
                f'{len(known_ids)} category ids {known_ids}, but metainfo.classes '
                f'gives {len(names)} names; give one name per id, in ascending '
                'id order')
    selected = [Category(category_id, name, normalize_category_name(name))
                for category_id, name in zip(known_ids, names)]
    return CategoryTable(selected=selected, known_ids=set(found_ids),
                         inferred=True, generated_names=generated_names)


def _select_by_id(ann_file: str, candidates: list[Category],
                  category_ids: Sequence[Any]) -> list[Category]:
    by_id = {category.id: category for category in candidates}
    missing = [value for value in category_ids if value not in by_id]
    if missing:
        raise ConfigError(f'{ann_file}: category ids {missing} are requested but '
                          f'the file has no such (non-placeholder) category; '
                          f'available ids: {list(by_id)}')
    return [by_id[value] for value in category_ids]


def _select_by_name(ann_file: str, candidates: list[Category],
                    classes: Sequence[str]) -> list[Category]:
    """Select categories whose name or prompt text equals a configured class."""
    selected = []
    missing = []
    for class_name in classes:
        matches = [category for category in candidates
                   if class_name in (category.name, category.text)
                   or normalize_category_name(class_name) == category.text]
        if not matches:
            missing.append(class_name)
        elif len(matches) > 1:
            described = ', '.join(f'{category.id!r} ({category.name})' for category in matches)
            raise ConfigError(f'{ann_file}: class {class_name!r} from metainfo.classes '
                              f'matches several categories: {described}; rename '
                              'them in the file so that each name is unique')
        else:
            selected.append(matches[0])
    if missing:
        available = [category.name for category in candidates]
        raise ConfigError(f'{ann_file}: classes {missing} from metainfo.classes are '
                          f'not categories of the file; available names: {available}')
    return selected


def _check_prompt_texts(ann_file: str, selected: list[Category],
                        deferred: Optional[list[str]] = None) -> None:
    """Raise when no category is selected, or when a prompt text is empty or
    shared by two categories (appended to `deferred` instead when given)."""
    problems = []
    for category in selected:
        if not category.text:
            problems.append(f'category {category.id!r} ({category.name!r}) has no '
                            'prompt text after normalization; give it a name with '
                            'letters or digits')
    for text in find_duplicate_texts([category.text for category in selected]):
        sharing = ', '.join(f'{category.id!r} ({category.name!r})'
                            for category in selected if category.text == text)
        problems.append(f'categories {sharing} share the prompt text {text!r}; '
                        'each category needs a distinct name (merge them into '
                        'one category or rename one)')
    if selected and deferred is not None:
        deferred.extend(problems)
        return
    if not selected:
        problems.append('no category is left to train on; the file needs at '
                        'least one category that is not a placeholder '
                        f'({", ".join(PLACEHOLDER_CATEGORY_NAMES)})')
    if problems:
        raise AnnotationError(_format_category_problems(ann_file, problems))


def _format_category_problems(ann_file: str, problems: list[str]) -> str:
    lines = [f'{ann_file}: {len(problems)} problem(s) with the categories:']
    lines += [f'  - {problem}' for problem in problems]
    return '\n'.join(lines)
