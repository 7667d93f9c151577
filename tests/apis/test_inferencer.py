"""GroundedSAMInferencer on paths and arrays, with default and free-text prompts."""
from pathlib import Path

import numpy as np
import pytest
import torch

from gsam_mm.apis import GroundedSAMInferencer, PromptCategories
from gsam_mm.datasets.images import read_rgb_image
from gsam_mm.engine.hooks.epoch_checkpoint_hook import (FROZEN_FINGERPRINTS_META_KEY,
                                                        TRAINABLE_ONLY_META_KEY,
                                                        frozen_fingerprints)
from gsam_mm.errors import ConfigError, InputError, PromptError

from ..coco_files import save_rotated_jpeg
from ..conftest import DEMO_CONFIG
from .conftest import SPARSE_CATEGORY_IDS, demo_cfg_options

IMAGE_NAME = 'JPEGImages/2011_000003.jpg'


@pytest.fixture(scope='module')
def inferencer(demo_checkpoint):
    return GroundedSAMInferencer(DEMO_CONFIG, str(demo_checkpoint), device='cpu',
                                 score_threshold=0.0, cfg_options=demo_cfg_options())


def test_path_result_in_original_pixels(inferencer, demo_data):
    path = str(demo_data / IMAGE_NAME)
    result = inferencer(path, texts='person . bottle')
    height, width = read_rgb_image(path).shape[:2]

    assert len(result) > 0
    assert result.image_shape == (height, width)
    assert result.image_path == path
    assert result.masks.shape == (len(result), height, width)
    assert result.masks.dtype == bool
    assert result.bboxes.shape == (len(result), 4)
    assert (result.bboxes[:, 2] <= width + 1e-3).all()
    assert set(result.labels.tolist()) <= {0, 1}
    assert set(result.label_names) <= {'person', 'bottle'}
    assert (np.diff(result.scores) <= 0).all()


def test_array_matches_path(inferencer, demo_data):
    path = str(demo_data / IMAGE_NAME)
    rgb = read_rgb_image(path)
    from_path = inferencer(path, texts='person')
    from_rgb = inferencer(rgb, texts='person', channel_order='rgb')
    from_bgr = inferencer(rgb[:, :, ::-1].copy(), texts='person', channel_order='bgr')

    assert np.allclose(from_rgb.bboxes, from_path.bboxes)
    assert np.array_equal(from_rgb.masks, from_path.masks)
    assert np.allclose(from_bgr.scores, from_path.scores)
    assert np.array_equal(from_bgr.masks, from_path.masks)
    assert from_rgb.image_path is None


def test_swapped_channels_change_result(inferencer, demo_data):
    rgb = read_rgb_image(str(demo_data / IMAGE_NAME))
    as_rgb = inferencer(rgb, texts='person', channel_order='rgb')
    as_bgr = inferencer(rgb, texts='person', channel_order='bgr')

    assert not np.allclose(as_rgb.scores, as_bgr.scores)


def test_array_needs_channel_order(inferencer):
    with pytest.raises(InputError, match='channel_order must be one of'):
        inferencer(np.zeros((32, 48, 3), dtype=np.uint8), texts='person')


def test_gray_array_rejected(inferencer):
    with pytest.raises(InputError, match=r'\(H, W, 3\) uint8, got shape \(32, 48\)'):
        inferencer(np.zeros((32, 48), dtype=np.uint8), texts='person', channel_order='rgb')


def test_list_input_in_batches(inferencer, demo_data):
    paths = [str(path) for path in sorted((demo_data / 'JPEGImages').glob('*.jpg'))][:2]
    results = inferencer(paths, texts='person', batch_size=2)
    one_by_one = [inferencer(path, texts='person') for path in paths]

    assert [result.image_path for result in results] == paths
    for batched, single in zip(results, one_by_one):
        assert np.allclose(batched.scores, single.scores, atol=1e-5)


def test_apply_exif_per_image(inferencer, tmp_path):
    path = str(tmp_path / 'rotated.jpg')
    save_rotated_jpeg(tmp_path / 'rotated.jpg', 64, 48)

    as_stored, displayed = inferencer([path, path], texts='box', apply_exif=[False, True])
    single = inferencer(path, texts='box', apply_exif=False)

    assert as_stored.image_shape == (48, 64)
    assert as_stored.masks.shape[1:] == (48, 64)
    assert displayed.image_shape == (64, 48)
    assert single.image_shape == (48, 64)
    with pytest.raises(InputError, match=r'apply_exif has 1 value\(s\) for 2 images'):
        inferencer([path, path], texts='box', apply_exif=[False])


def test_default_prompt_from_checkpoint(inferencer):
    categories = inferencer.categories_for(None)

    assert categories.from_dataset
    assert categories.category_ids == SPARSE_CATEGORY_IDS
    assert categories.names[-1] == 'tv/monitor'


def test_default_prompt_from_annotation_file(demo_data):
    zero_shot = GroundedSAMInferencer(DEMO_CONFIG, None, device='cpu',
                                      cfg_options=demo_cfg_options())
    categories = zero_shot.categories_for(None)

    # The file's own ids; _background_ (id 0) is a placeholder, not a category.
    assert categories.category_ids == tuple(range(1, 21))
    assert categories.names[0] == 'aeroplane'


def test_string_category_ids_kept():
    """COCO files may use string ids; results must name them as the file does."""
    categories = PromptCategories.from_dataset_meta(
        {'classes': ('crack', 'rust'), 'cat_ids': ('crack-01', '7')})

    assert categories.category_ids == ('crack-01', '7')


def test_free_text_numbered_from_one():
    categories = PromptCategories.from_free_text('Crack . rust_spot . ')

    assert categories.texts == ('crack', 'rust spot')
    assert categories.category_ids == (1, 2)
    assert not categories.from_dataset


def test_empty_prompt_rejected():
    with pytest.raises(PromptError, match='contains no phrase'):
        PromptCategories.from_free_text(' . ')


def test_repeated_phrase_is_rejected():
    with pytest.raises(PromptError, match=r"repeats \['person'\]; give each phrase once"):
        PromptCategories.from_free_text('person . Person')


def save_trainable_only(contents: dict, frozen: list[str], path: Path,
                        fingerprinted_state: dict) -> Path:
    """Save `contents` without the `frozen` parameters, as the checkpoint hook
    does, with the fingerprints of `fingerprinted_state`."""
    contents['meta'][FROZEN_FINGERPRINTS_META_KEY] = frozen_fingerprints(fingerprinted_state,
                                                                         frozen)
    for name in frozen:
        del contents['state_dict'][name]
    contents['meta'][TRAINABLE_ONLY_META_KEY] = frozen
    torch.save(contents, path)
    return path


def test_trainable_only_checkpoint_loads(inferencer, demo_checkpoint, demo_data, tmp_path):
    contents = torch.load(demo_checkpoint, map_location='cpu', weights_only=False)
    frozen = [name for name, parameter in inferencer.model.named_parameters()
              if not parameter.requires_grad]
    path = save_trainable_only(contents, frozen, tmp_path / 'trainable_only.pth',
                               dict(contents['state_dict']))

    # The demo's frozen parts are random: seed as the checkpoint's model was
    # seeded, so they match as pretrained files make them match.
    torch.manual_seed(0)
    restored = GroundedSAMInferencer(DEMO_CONFIG, str(path), device='cpu',
                                     score_threshold=0.0, cfg_options=demo_cfg_options())
    image = str(demo_data / IMAGE_NAME)

    assert frozen
    assert np.allclose(restored(image, texts='person').scores,
                       inferencer(image, texts='person').scores)


def test_trainable_only_other_frozen_weights_rejected(inferencer, demo_checkpoint, tmp_path):
    """Frozen weights other than those of training would give wrong results silently."""
    contents = torch.load(demo_checkpoint, map_location='cpu', weights_only=False)
    frozen = [name for name, parameter in inferencer.model.named_parameters()
              if not parameter.requires_grad]
    trained_with = dict(contents['state_dict'])
    key = next(name for name in frozen if name.startswith('sam.prompt_encoder'))
    trained_with[key] = trained_with[key] + 1
    path = save_trainable_only(contents, frozen, tmp_path / 'trainable_only.pth', trained_with)

    with pytest.raises(ConfigError, match=r'frozen parameters of sam\.prompt_encoder differ'):
        GroundedSAMInferencer(DEMO_CONFIG, str(path), device='cpu',
                              cfg_options=demo_cfg_options())
