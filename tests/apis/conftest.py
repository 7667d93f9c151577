"""A tiny demo-config GroundingSAM saved as a checkpoint, for the inference tests."""
from pathlib import Path

import pytest

import gsam_mm  # noqa: F401

from ..conftest import DEMO_DATA, save_random_demo_checkpoint

DEMO_CATEGORY_NAMES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
                       'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person',
                       'potted plant', 'sheep', 'sofa', 'train', 'tv/monitor')

# Category ids written into the checkpoint's dataset meta, deliberately not
# 1..20, so a test can tell them from label positions.
SPARSE_CATEGORY_IDS = tuple(range(101, 121))


def demo_cfg_options() -> dict:
    """Point the demo config's test data at the demo folder, from any cwd."""
    return {'test_dataloader.dataset.data_root': str(DEMO_DATA) + '/'}


@pytest.fixture(scope='session')
def demo_checkpoint(tmp_path_factory, demo_data) -> Path:
    """A full checkpoint of the demo model with random weights and the demo
    categories (with SPARSE_CATEGORY_IDS) in its dataset meta."""
    dataset_meta = {'classes': DEMO_CATEGORY_NAMES, 'category_texts': DEMO_CATEGORY_NAMES,
                    'cat_ids': SPARSE_CATEGORY_IDS}
    path = tmp_path_factory.mktemp('checkpoint') / 'demo_random.pth'
    return save_random_demo_checkpoint(path, dataset_meta)
