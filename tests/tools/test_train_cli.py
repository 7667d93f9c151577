"""The original tool's flags land on the right config keys."""
from pathlib import Path

import pytest

from gsam_mm.engine.runner_setup import load_config, select_optim_wrapper

from ..conftest import REPO_ROOT, load_tool

train = load_tool('train')

VITH = str(REPO_ROOT / 'configs' / 'gsam_vith.py')


def config_for(*flags):
    return load_config(train.parse_args([VITH, *flags]))


def test_annotations_and_images_set_train_and_val(tmp_path):
    cfg = config_for('--annotations', str(tmp_path / 'a.json'), '--images', str(tmp_path))

    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.ann_file == str(tmp_path / 'a.json')
        assert dataset.data_prefix.img.rstrip('/') == str(tmp_path)
        assert dataset.data_root == ''
    assert cfg.val_evaluator.ann_file == str(tmp_path / 'a.json')


def test_images_reach_the_evaluator(tmp_path):
    cfg = config_for('--annotations', str(tmp_path / 'a.json'), '--images', str(tmp_path))

    for evaluator in ('val_evaluator', 'test_evaluator'):
        assert cfg[evaluator].data_root == ''
        assert cfg[evaluator].data_prefix.img.rstrip('/') == str(tmp_path)


def test_annotations_alone_keep_config_images(tmp_path):
    cfg = config_for('--annotations', str(tmp_path / 'a.json'))

    for loader in ('train_dataloader', 'val_dataloader'):
        assert cfg[loader].dataset.ann_file == str(tmp_path / 'a.json')
        assert cfg[loader].dataset.data_prefix.img == 'data/coco/images/'
    assert cfg.val_evaluator.data_prefix.img == 'data/coco/images/'


def test_images_alone_keep_config_annotations(tmp_path):
    cfg = config_for('--images', str(tmp_path))

    assert cfg.train_dataloader.dataset.ann_file == 'data/coco/annotations/instances_train.json'
    assert cfg.val_dataloader.dataset.ann_file == 'data/coco/annotations/instances_val.json'
    assert cfg.val_evaluator.ann_file == 'data/coco/annotations/instances_val.json'
    assert cfg.val_dataloader.dataset.data_prefix.img.rstrip('/') == str(tmp_path)


def test_val_annotations_kept_apart(tmp_path):
    cfg = config_for('--annotations', str(tmp_path / 'train.json'),
                     '--val-annotations', str(tmp_path / 'val.json'))

    assert cfg.train_dataloader.dataset.ann_file == str(tmp_path / 'train.json')
    assert cfg.val_dataloader.dataset.ann_file == str(tmp_path / 'val.json')
    assert cfg.val_evaluator.ann_file == str(tmp_path / 'val.json')


def test_training_shortcuts():
    cfg = config_for('--epochs', '12', '--batch-size', '2', '--lr', '3e-5',
                     '--image-size', '800', '--output', 'out_dir', '--no-return-masks',
                     '--finetune-sam', '--checkpoint', 'dino.pth',
                     '--dino-config', 'GroundingDINO_SwinB_cfg.py',
                     '--sam-checkpoint', 'sam.pth', '--sam-backbone', 'vit_l')

    assert cfg.train_cfg.max_epochs == 12
    assert cfg.param_scheduler[0]['end'] == 12
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.optim_wrapper.optimizer.lr == 3e-5
    assert cfg.work_dir == 'out_dir'
    assert cfg.model.return_masks is False
    assert cfg.model.finetune_sam is True
    assert cfg.model.dino.checkpoint == 'dino.pth'
    assert cfg.model.dino.config_file == 'GroundingDINO_SwinB_cfg.py'
    assert cfg.model.sam.checkpoint == 'sam.pth'
    assert cfg.model.sam.backbone == 'vit_l'
    for loader in ('train_dataloader', 'val_dataloader'):
        pipeline = cfg[loader].dataset.pipeline
        assert [t['scale'] for t in pipeline if t['type'] == 'Resize'] == [(800, 800)]
        assert [t['size'] for t in pipeline if t['type'] == 'Pad'] == [(800, 800)]


@pytest.mark.parametrize('value, key, expected', [
    ('weights/sam_vit_b_01ec64.pth', 'checkpoint', 'weights/sam_vit_b_01ec64.pth'),
    ('vit_b', 'backbone', 'vit_b'),
])
def test_sam_model_is_deprecated_alias(value, key, expected):
    with pytest.warns(DeprecationWarning, match='--sam-model'):
        cfg = config_for('--sam-model', value)
    assert cfg.model.sam[key] == expected


def test_official_backbone_drops_tiny_input_size():
    demo = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')
    cfg = load_config(train.parse_args([demo, '--sam-backbone', 'vit_b']))
    assert cfg.model.sam.backbone == 'vit_b'
    assert 'image_size' not in cfg.model.sam


def test_epochs_keep_warmup_and_scale_milestones(tmp_path):
    config = tmp_path / 'warmup.py'
    config.write_text(f"_base_ = {VITH!r}\n"
                      "param_scheduler = [\n"
                      "    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1),\n"
                      "    dict(type='MultiStepLR', by_epoch=True, begin=0, end=50,\n"
                      "         milestones=[30, 45], gamma=0.1)]\n")

    cfg = load_config(train.parse_args([str(config), '--epochs', '10']))

    warmup, steps = cfg.param_scheduler
    assert warmup['end'] == 1
    assert steps['end'] == 10
    assert steps['milestones'] == [6, 9]


def test_one_epoch_keeps_full_learning_rate():
    cfg = config_for('--epochs', '1')
    milestones = [s['milestones'] for s in cfg.param_scheduler if 'milestones' in s]
    assert milestones == [[1]]


def test_cfg_options_still_apply():
    cfg = config_for('--cfg-options', 'train_cfg.max_epochs=3')
    assert cfg.train_cfg.max_epochs == 3


def test_default_work_dir_follows_config_name():
    assert Path(config_for().work_dir) == Path('work_dirs/gsam_vith')


def test_cpu_uses_plain_optimizer_wrapper(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = config_for()
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    select_optim_wrapper(cfg, amp_requested=True)
    assert cfg.optim_wrapper.type == 'OptimWrapper'


def test_cuda_switches_to_amp(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: True)
    monkeypatch.setattr('torch.cuda.is_bf16_supported', lambda including_emulation=True: False)
    cfg = config_for()
    select_optim_wrapper(cfg, amp_requested=False)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_embedding_cache_dir_follows_work_dir():
    cfg = config_for('--work-dir', 'work_dirs/run')
    assert cfg.model.sam_embedding_cache.disk_dir == 'work_dirs/run/sam_embeddings'
