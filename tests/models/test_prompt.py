import pytest
import torch
from transformers import AutoTokenizer

from gsam_mm.errors import PromptError
from gsam_mm.models.checkpoints import resolve_model_path
from gsam_mm.prompt import (build_caption, build_positive_map, count_caption_tokens,
                            describe_chunks, normalize_category_name, split_prompt)

from ..conftest import TEXT_ENCODER


@pytest.fixture(scope='module')
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model_path(TEXT_ENCODER))


@pytest.mark.parametrize('name, text', [
    ('potted_plant', 'potted plant'),
    ('Traffic.Light', 'traffic light'),
    ('tv/monitor', 'tv/monitor'),
    ('  Big   Dog ', 'big dog'),
])
def test_normalize_category_name(name, text):
    assert normalize_category_name(name) == text


def test_caption_records_spans_while_joining():
    caption = build_caption(['cat', 'jellyfish', 'fish'])
    assert caption.text == 'cat . jellyfish . fish .'
    assert caption.spans == ((0, 3), (6, 15), (18, 22))
    for (start, end), name in zip(caption.spans, ['cat', 'jellyfish', 'fish']):
        assert caption.text[start:end] == name


def test_caption_rejects_duplicate_names():
    with pytest.raises(PromptError, match="'car'"):
        build_caption(['car', 'bus', 'car'])


def test_caption_rejects_empty_name():
    with pytest.raises(PromptError, match=r'\[1\]'):
        build_caption(['car', ''])


def test_positive_map_fish_is_not_jellyfish(tokenizer):
    caption = build_caption(['cat', 'jellyfish', 'fish'])
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(caption.text)['input_ids'])
    # Worked out from the uncased WordPiece vocabulary.
    assert tokens == ['[CLS]', 'cat', '.', 'jelly', '##fish', '.', 'fish', '.', '[SEP]']

    positive_map = build_positive_map(caption, tokenizer, max_text_len=16)

    assert positive_map.shape == (3, 16)
    assert positive_map[0].nonzero().flatten().tolist() == [1]
    assert positive_map[1].nonzero().flatten().tolist() == [3, 4]
    assert positive_map[2].nonzero().flatten().tolist() == [6]


def test_positive_map_multi_word_name(tokenizer):
    caption = build_caption(['potted plant', 'tv/monitor'])
    positive_map = build_positive_map(caption, tokenizer, max_text_len=16)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(caption.text)['input_ids'])

    assert [tokens[i] for i in positive_map[0].nonzero().flatten()] == ['pot', '##ted', 'plant']
    assert [tokens[i] for i in positive_map[1].nonzero().flatten()] == ['tv', '/', 'monitor']


def test_positive_map_rejects_caption_over_limit(tokenizer):
    names = [f'category number {index}' for index in range(100)]
    caption = build_caption(names)
    needed = count_caption_tokens(caption, tokenizer)
    assert needed > 256

    with pytest.raises(PromptError, match=f'needs {needed} tokens.*limit of 256'):
        build_positive_map(caption, tokenizer, max_text_len=256)


# The category names of an annotation file whose caption needs about 1,500 tokens.
LONG_NAMES = [f'category number {index} with a rather long descriptive name'
              for index in range(1, 121)]


def test_split_prompt_keeps_short_list_whole(tokenizer):
    texts = ['cat', 'dog', 'jellyfish']
    chunks = split_prompt(texts, tokenizer, max_text_len=256)

    assert len(chunks) == 1
    assert chunks[0].caption == build_caption(texts)
    assert chunks[0].labels == (0, 1, 2)
    assert chunks[0].positive_map.shape == (3, 256)


def test_split_prompt_fits_every_caption(tokenizer):
    texts = [normalize_category_name(name) for name in LONG_NAMES]
    assert count_caption_tokens(build_caption(texts), tokenizer) > 256

    chunks = split_prompt(texts, tokenizer, max_text_len=256)

    assert len(chunks) > 1
    assert [label for chunk in chunks for label in chunk.labels] == list(range(120))
    for chunk in chunks:
        assert chunk.num_tokens <= 256
        assert chunk.num_tokens == count_caption_tokens(chunk.caption, tokenizer)
        assert chunk.positive_map.shape == (len(chunk.labels), 256)
        assert chunk.positive_map.any(dim=1).all()
    # Greedy packing: the next category would not have fitted.
    for chunk, following in zip(chunks, chunks[1:]):
        grown = build_caption([texts[label] for label in chunk.labels + following.labels[:1]])
        assert count_caption_tokens(grown, tokenizer) > 256


def test_split_prompt_chunk_holds_its_labels(tokenizer):
    chunks = split_prompt(['a cat', 'a dog', 'a bird', 'a fish'], tokenizer,
                          max_text_len=256, max_tokens=8)
    labels = torch.tensor([0, 1, 2, 3])

    assert [chunk.labels for chunk in chunks] == [(0, 1), (2, 3)]
    assert chunks[1].holds(labels).tolist() == [False, False, True, True]
    assert chunks[1].local_labels(labels[2:]).tolist() == [0, 1]
    assert chunks[1].dataset_labels(torch.tensor([0, 1])).tolist() == [2, 3]
    assert 'caption 1: labels 2-3 (2 categories, 8 tokens)' in describe_chunks(chunks, 8)


def test_split_prompt_rejects_name_over_budget(tokenizer):
    with pytest.raises(PromptError, match="category 1 .'a very long name indeed'. alone needs"):
        split_prompt(['cat', 'a very long name indeed'], tokenizer, max_text_len=256,
                     max_tokens=6)


def test_split_prompt_rejects_repeats_across_chunks(tokenizer):
    with pytest.raises(PromptError, match=r"\['cat'\] occur more than once"):
        split_prompt(['cat', 'dog', 'bird', 'cat'], tokenizer, max_text_len=256, max_tokens=5)
