"""Text prompts for Grounding DINO: captions built from category names, and
the positive map that ties each category to its tokens.

Shape letters: K categories, T text tokens (at most the encoder's limit).
"""
import re
from collections import Counter
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .errors import PromptError

# Grounding DINO separates phrases with " . "; a period inside a name would
# split it into two phrases.
CATEGORY_SEPARATOR = ' . '


def normalize_category_name(name: str) -> str:
    """Turn a category name into prompt text: `_` to space, `.` removed,
    lower case, runs of white space collapsed."""
    text = name.replace('_', ' ').replace('.', ' ').lower()
    return re.sub(r'\s+', ' ', text).strip()


def find_duplicate_texts(texts: Sequence[str]) -> list[str]:
    """Return the prompt texts that occur more than once, in first-seen order."""
    counts = Counter(texts)
    return [text for text in dict.fromkeys(texts) if counts[text] > 1]


@dataclass(frozen=True)
class Caption:
    """A caption and the character span of each category inside it.

    Spans are recorded while the caption is assembled, so a name contained in
    another ("fish" in "jellyfish") still maps to its own position.
    """

    text: str
    spans: tuple[tuple[int, int], ...]


def build_caption(category_texts: Sequence[str]) -> Caption:
    """Join prompt texts into `a . b . c .`, recording each text's span.

    Raises:
        PromptError: when a text is empty or two texts are equal.
    """
    empty = [index for index, text in enumerate(category_texts) if not text]
    if empty:
        raise PromptError(f'category texts at positions {empty} are empty; '
                          'every category needs a non-empty name')
    duplicates = find_duplicate_texts(category_texts)
    if duplicates:
        raise PromptError(f'category texts {duplicates} occur more than once; '
                          'each category needs a distinct name')

    parts = []
    spans = []
    cursor = 0
    for index, text in enumerate(category_texts):
        if index:
            parts.append(CATEGORY_SEPARATOR)
            cursor += len(CATEGORY_SEPARATOR)
        spans.append((cursor, cursor + len(text)))
        parts.append(text)
        cursor += len(text)
    parts.append(' .')
    return Caption(text=''.join(parts), spans=tuple(spans))


def count_caption_tokens(caption: Caption, tokenizer) -> int:
    """Return the caption's token count for the text encoder, [CLS] and [SEP] included."""
    return len(tokenizer(caption.text)['input_ids'])


def build_positive_map(caption: Caption, tokenizer,
                       max_text_len: int = 256) -> torch.Tensor:
    """Mark, for each category, the tokens that spell its name.

    Args:
        caption: caption with recorded category spans.
        tokenizer: a Hugging Face fast tokenizer (it must return offsets).
        max_text_len: the text encoder's token limit T.

    Returns:
        A bool tensor of shape (K, T) whose row k is true on the tokens of
        category k.

    Raises:
        PromptError: when the caption needs more than `max_text_len` tokens.
    """
    encoding = tokenizer(caption.text, return_offsets_mapping=True)
    num_tokens = len(encoding['input_ids'])
    if num_tokens > max_text_len:
        raise PromptError(
            f'the caption of {len(caption.spans)} categories needs {num_tokens} '
            f'tokens, more than the text encoder limit of {max_text_len}; '
            'shorten the category names or train on fewer categories')

    positive_map = torch.zeros(len(caption.spans), max_text_len, dtype=torch.bool)
    for token_index, (token_start, token_end) in enumerate(encoding['offset_mapping']):
        if token_end <= token_start:  # special tokens have empty offsets
            continue
        for category_index, (span_start, span_end) in enumerate(caption.spans):
            if token_start < span_end and token_end > span_start:
                positive_map[category_index, token_index] = True

    missing = [index for index, row in enumerate(positive_map) if not row.any()]
    if missing:
        raise PromptError(f'categories at positions {missing} map to no token of '
                          f'the caption {caption.text!r}')
    return positive_map


@dataclass(frozen=True)
class PromptChunk:
    """One caption of a prompt that is split to fit the text encoder.

    Attributes:
        caption: the caption of this chunk's categories.
        labels: dataset labels of the chunk's categories, in caption order;
            row k of `positive_map` belongs to label `labels[k]`.
        positive_map: (K_c, T) bool map of the chunk's categories to tokens.
        num_tokens: the caption's token count, [CLS] and [SEP] included.
    """

    caption: Caption
    labels: tuple[int, ...]
    positive_map: torch.Tensor
    num_tokens: int

    def holds(self, labels: torch.Tensor) -> torch.Tensor:
        """Return which of the dataset `labels` (N,) are in this chunk, as (N,) bool.

        `split_prompt` packs consecutive labels, so a range check suffices.
        """
        return (labels >= self.labels[0]) & (labels <= self.labels[-1])

    def local_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Return the rows of `positive_map` of dataset `labels` this chunk holds."""
        return labels - self.labels[0]

    def dataset_labels(self, local_labels: torch.Tensor) -> torch.Tensor:
        """Return the dataset labels of `positive_map` rows; the inverse of `local_labels`."""
        return local_labels + self.labels[0]


def split_prompt(category_texts: Sequence[str], tokenizer, max_text_len: int = 256,
                 max_tokens: Optional[int] = None) -> list[PromptChunk]:
    """Split the categories, in label order, into captions that fit a token budget.

    Categories are packed in label order: each caption takes the following
    categories until the next one would push it over `max_tokens`. A
    category list that fits in one caption gives exactly the caption of
    `build_caption`.

    Args:
        category_texts: prompt texts in label order.
        tokenizer: a Hugging Face fast tokenizer (it must return offsets).
        max_text_len: the text encoder's token limit T; positive maps have
            this many columns.
        max_tokens: token budget of one caption, at most `max_text_len`
            (the default).

    Raises:
        PromptError: on empty or repeated texts, or a single category whose
            caption alone needs more than `max_tokens` tokens.
    """
    max_tokens = max_text_len if max_tokens is None else max_tokens
    if not 0 < max_tokens <= max_text_len:
        raise PromptError(f'max_tokens must be between 1 and the text encoder limit '
                          f'{max_text_len}, got {max_tokens}')
    build_caption(category_texts)  # checks empty and repeated texts across all chunks

    groups: list[list[int]] = []
    for label, text in enumerate(category_texts):
        if groups and _caption_tokens(groups[-1] + [label], category_texts,
                                      tokenizer) <= max_tokens:
            groups[-1].append(label)
            continue
        num_tokens = _caption_tokens([label], category_texts, tokenizer)
        if num_tokens > max_tokens:
            raise PromptError(f'category {label} ({text!r}) alone needs {num_tokens} '
                              f'tokens, more than the caption budget of {max_tokens}; '
                              'shorten its name')
        groups.append([label])

    chunks = []
    for labels in groups:
        caption = build_caption([category_texts[label] for label in labels])
        chunks.append(PromptChunk(
            caption=caption, labels=tuple(labels),
            positive_map=build_positive_map(caption, tokenizer, max_text_len),
            num_tokens=count_caption_tokens(caption, tokenizer)))
    return chunks


def _caption_tokens(labels: list[int], category_texts: Sequence[str], tokenizer) -> int:
    caption = build_caption([category_texts[label] for label in labels])
    return count_caption_tokens(caption, tokenizer)


def describe_chunks(chunks: Sequence[PromptChunk], max_tokens: int) -> str:
    """Describe how the categories are split, one line per caption."""
    total = sum(len(chunk.labels) for chunk in chunks)
    lines = [f'{total} categories in {len(chunks)} caption(s) of at most {max_tokens} tokens:']
    for index, chunk in enumerate(chunks):
        first, last = chunk.labels[0], chunk.labels[-1]
        span = f'label {first}' if first == last else f'labels {first}-{last}'
        lines.append(f'  caption {index}: {span} ({len(chunk.labels)} categories, '
                     f'{chunk.num_tokens} tokens)')
    return '\n'.join(lines)
