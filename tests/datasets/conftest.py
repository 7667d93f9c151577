"""Fixtures that write tiny COCO files with real images and build datasets from them."""
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest
from mmengine.registry import init_default_scope

import gsam_mm.datasets  # noqa: F401  (registers the dataset and transforms)
import gsam_mm.evaluation  # noqa: F401  (registers the metric)

from ..coco_files import (BACKGROUND_GRAY, CAT_DOG, OBJECT_RGB, annotation, draw_boxes, square,
                          write_coco)


@pytest.fixture
def coco():
    """Return the COCO writing helpers of `tests/coco_files.py` as one namespace."""
    return SimpleNamespace(write=write_coco, annotation=annotation, square=square,
                           draw_boxes=draw_boxes, CAT_DOG=CAT_DOG, OBJECT_RGB=OBJECT_RGB,
                           BACKGROUND_GRAY=BACKGROUND_GRAY)


@pytest.fixture(autouse=True, scope='session')
def mmdet_scope():
    """Resolve registry names such as 'Resize' in mmdet's scope, as configs do."""
    init_default_scope('mmdet')


@pytest.fixture
def build_dataset():
    """Return a function that builds `CocoWithMasksDataset` through the registry."""
    from mmdet.registry import DATASETS

    def build(ann_file: Path, pipeline: Optional[list] = None, **kwargs):
        config = dict(type='CocoWithMasksDataset', ann_file=str(ann_file),
                      data_prefix=dict(img=str(Path(ann_file).parent)),
                      pipeline=pipeline or [])
        config.update(kwargs)
        return DATASETS.build(config)

    return build


@pytest.fixture
def messages_at():
    """Return a function listing the messages of log records with one level."""
    def select(records: list, level: int) -> list[str]:
        return [record.getMessage() for record in records if record.levelno == level]
    return select
