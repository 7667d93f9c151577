import pytest
from transformers import AutoTokenizer

from gsam_mm.errors import PromptError
from gsam_mm.models.checkpoints import resolve_model_path
from gsam_mm.prompt import (build_caption, build_positive_map, count_caption_tokens,
                            normalize_category_name)

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
