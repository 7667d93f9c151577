"""The prompt side of a dataset check: each category's prompt text, its
tokens, its instance counts, and how the captions are split.
"""
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import PromptError
from ..prompt import build_caption, count_caption_tokens, split_prompt
from .categories import CategoryTable
from .coco_file import CocoAnnotations


@dataclass
class CategoryEntry:
    """One labelled category and its place in the model's prompt.

    Attributes:
        caption: index of the caption chunk holding the category, None when
            no tokenizer was available.
        tokens: first and last token index of the category in that caption.
        instances: training instances per split name.
    """

    label: int
    id: Any
    name: str
    text: str
    caption: Optional[int] = None
    tokens: Optional[tuple[int, int]] = None
    instances: dict[str, int] = field(default_factory=dict)


@dataclass
class VocabularyReport:
    """Categories, prompt captions and token counts of a dataset.

    Attributes:
        caption_tokens: tokens that one caption of every category needs,
            [CLS] and [SEP] included; None without a tokenizer.
        captions: per caption chunk, its labels and token count.
        contained_texts: `(shorter, longer)` prompt-text pairs where the
            first occurs inside the second ("fish" in "jellyfish").
        note: why token counts are missing, when they are.
        error: a prompt that cannot be built (a name over the token budget).
    """

    categories: list[CategoryEntry]
    placeholders: list[tuple[Any, str]]
    max_text_len: int
    max_prompt_tokens: int
    caption_tokens: Optional[int] = None
    captions: list[dict] = field(default_factory=list)
    contained_texts: list[tuple[str, str]] = field(default_factory=list)
    note: Optional[str] = None
    error: Optional[str] = None


def check_vocabulary(table: CategoryTable, splits: dict[str, CocoAnnotations],
                     tokenizer: Any, max_text_len: int = 256,
                     max_prompt_tokens: Optional[int] = None,
                     tokenizer_note: Optional[str] = None) -> VocabularyReport:
    """Describe the prompt that training would build from these categories.

    Args:
        table: the training file's categories.
        splits: loaded annotations by split name, for instance counts.
        tokenizer: the text encoder's tokenizer, or None to skip token counts.
        max_text_len: the text encoder's token limit.
        max_prompt_tokens: token budget of one caption (default: the limit).
        tokenizer_note: why `tokenizer` is None, shown in the report.
    """
    entries = [CategoryEntry(label, category.id, category.name, category.text)
               for label, category in enumerate(table.selected)]
    for split_name, annotations in splits.items():
        counts = _count_instances(annotations, len(entries))
        for entry, count in zip(entries, counts):
            entry.instances[split_name] = count

    texts = [entry.text for entry in entries]
    report = VocabularyReport(categories=entries, placeholders=list(table.placeholders),
                              max_text_len=max_text_len,
                              max_prompt_tokens=max_prompt_tokens or max_text_len,
                              contained_texts=find_contained_texts(texts), note=tokenizer_note)
    if tokenizer is not None and entries:
        _add_token_counts(report, texts, tokenizer)
    return report


def _count_instances(annotations: CocoAnnotations, num_labels: int) -> list[int]:
    counts = [0] * num_labels
    for record in annotations.iter_instances():
        if record.ignore_reason is None and record.label is not None \
                and 0 <= record.label < num_labels:
            counts[record.label] += 1
    return counts


def find_contained_texts(texts: list[str]) -> list[tuple[str, str]]:
    """Return `(shorter, longer)` pairs of prompt texts where one contains the other."""
    ordered = sorted(texts, key=len)
    pairs = []
    for index, shorter in enumerate(ordered):
        for longer in ordered[index + 1:]:
            if shorter in longer and shorter != longer:
                pairs.append((shorter, longer))
    return pairs


def _add_token_counts(report: VocabularyReport, texts: list[str], tokenizer: Any) -> None:
    """Fill the caption split and each category's caption and token span."""
    try:
        report.caption_tokens = count_caption_tokens(build_caption(texts), tokenizer)
        chunks = split_prompt(texts, tokenizer, report.max_text_len, report.max_prompt_tokens)
    except PromptError as err:
        report.error = str(err)
        return

    for chunk_index, chunk in enumerate(chunks):
        report.captions.append({'labels': [chunk.labels[0], chunk.labels[-1]],
                                'num_tokens': chunk.num_tokens})
        for row, label in enumerate(chunk.labels):
            token_indices = chunk.positive_map[row].nonzero().flatten().tolist()
            entry = report.categories[label]
            entry.caption = chunk_index
            entry.tokens = (token_indices[0], token_indices[-1])
