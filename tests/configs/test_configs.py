"""Every config under configs/ parses and its model builds."""
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmdet.registry import DATASETS, METRICS, MODELS
from PIL import Image

import gsam_mm  # noqa: F401
from gsam_mm.models.sam import SAM_ARCHITECTURES

from ..coco_files import annotation, draw_boxes, write_coco
from ..conftest import REPO_ROOT, TEXT_ENCODER

CONFIGS = sorted((REPO_ROOT / 'configs').glob('*.py'))


def test_configs_found():
    names = {path.name for path in CONFIGS}
    assert {'gsam_vith.py', 'gsam_vitb.py', 'gsam_tiny_demo.py'} <= names


@pytest.mark.parametrize('config_path', CONFIGS, ids=lambda path: path.name)
def test_config_parses_with_at_most_one_base(config_path: Path):
    cfg = Config.fromfile(config_path)
    assert cfg.model.type == 'GroundingSAM'
    assert cfg.default_scope == 'mmdet'
    assert cfg.val_evaluator.metric == ['bbox', 'segm']
    assert cfg.train_cfg.val_interval >= 1
    base_files = Config._get_base_files(str(config_path))
    for base in base_files:
        assert not Config._get_base_files(str(config_path.parent / base))


def test_vith_keeps_original_defaults():
    cfg = Config.fromfile(REPO_ROOT / 'configs' / 'gsam_vith.py')
    assert cfg.model.sam.backbone == 'vit_h'
    assert cfg.train_cfg.max_epochs == 50
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.model.return_masks and cfg.model.finetune_sam
    assert cfg.model.dino.text_encoder == 'bert-base-uncased'
    resize = [t for t in cfg.train_pipeline if t['type'] == 'Resize'][0]
    assert resize['scale'] == (1024, 1024)


@pytest.mark.parametrize('config_name', ['gsam_vith.py', 'gsam_vitb.py'])
def test_full_size_config_builds_model_structure(config_name):
    """Build the real architecture with random weights and the local text
    encoder in place of the checkpoints and bert-base-uncased."""
    cfg = Config.fromfile(REPO_ROOT / 'configs' / config_name)
    cfg.model.dino.checkpoint = None
    cfg.model.dino.text_encoder = TEXT_ENCODER
    cfg.model.sam.checkpoint = None
    model = MODELS.build(cfg.model)
    arch = SAM_ARCHITECTURES[cfg.model.sam.backbone]
    assert len(model.sam.image_encoder.blocks) == arch.encoder_depth
    assert model.sam.image_encoder.patch_embed.proj.out_channels == arch.encoder_embed_dim
    assert model.dino.transformer.num_queries == 900
    assert len(model.dino.transformer.decoder.layers) == 6


def test_demo_config_builds_model_and_dataset(demo_data):
    cfg = Config.fromfile(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')
    model = MODELS.build(cfg.model)
    assert model.sam.image_encoder.img_size == cfg.image_size
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.dataset.data_root = str(demo_data) + '/'
    dataset = DATASETS.build(dataset_cfg)
    assert len(dataset) == 3 * cfg.repeat_times


def test_vith_evaluator_reads_mask_files(tmp_path):
    """With `data_root` edited, as a user does, the metric finds `mask_path`
    masks in the same image folder as the dataset."""
    root = tmp_path / 'my_set'
    image = {'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48}
    write_coco(root / 'images', [image],
               [annotation(1, 1, 2, [8, 4, 20, 10], mask_path='masks/a_1.png')],
               name='instances_val.json')
    (root / 'annotations').mkdir()
    (root / 'images' / 'instances_val.json').rename(root / 'annotations' / 'instances_val.json')
    (root / 'images' / 'masks').mkdir()
    mask = draw_boxes(64, 48, [[8, 4, 20, 10]])[..., 0] > 100
    Image.fromarray(mask.astype(np.uint8) * 255).save(root / 'images' / 'masks' / 'a_1.png')
    text = (REPO_ROOT / 'configs' / 'gsam_vith.py').read_text()
    config = tmp_path / 'my_config.py'
    config.write_text(text.replace("data_root = 'data/coco/'", f"data_root = '{root}/'"))
    cfg = Config.fromfile(config)

    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    metric = METRICS.build(cfg.val_evaluator)
    metric.dataset_meta = dataset.metainfo

    assert metric.gt_image_dir == f'{root}/images/'
    assert len(metric._coco_api.getAnnIds()) == 1
