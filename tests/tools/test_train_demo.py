"""tools/train.py and tools/test.py on the real labelme photos, tiny model."""
import json

import pytest
import torch
from PIL import Image

from gsam_mm.errors import ConfigError

from ..conftest import REPO_ROOT, load_tool

train = load_tool('train')
test_tool = load_tool('test')

DEMO = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')


def demo_flags(demo_data, work_dir, epochs):
    annotations = str(demo_data / 'annotations.json')
    return [DEMO, '--work-dir', str(work_dir), '--epochs', str(epochs),
            '--image-size', '128', '--annotations', annotations, '--images', str(demo_data),
            '--cfg-options', 'train_dataloader.dataset.times=1', 'randomness.seed=0']


def read_scalars(work_dir):
    """Return the records of the run's scalars.json files (train and val)."""
    records = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def test_one_epoch_then_resume(demo_data, tmp_path):
    work_dir = tmp_path / 'run'
    train.main(demo_flags(demo_data, work_dir, epochs=1))

    first = work_dir / 'epoch_1.pth'
    assert first.is_file()
    records = read_scalars(work_dir)
    losses = [record['loss'] for record in records if 'loss' in record]
    assert losses
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert any('coco/bbox_mAP' in record and 'coco/segm_mAP' in record for record in records)

    # The first run stopped after epoch 1 of 2; --resume continues it.
    train.main(demo_flags(demo_data, work_dir, epochs=2) + ['--resume'])

    second = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)
    assert second['meta']['epoch'] == 2
    restored = torch.load(first, map_location='cpu', weights_only=False)
    assert restored['meta']['epoch'] == 1
    # AdamW's step count continued from the first run instead of restarting.
    steps_first = next(iter(restored['optimizer']['state'].values()))['step']
    steps_second = next(iter(second['optimizer']['state'].values()))['step']
    assert steps_second == 2 * steps_first


def test_test_tool_reports_both_metrics(demo_data, tmp_path, capsys):
    work_dir = tmp_path / 'run'
    train.main(demo_flags(demo_data, work_dir, epochs=1))
    capsys.readouterr()

    annotations = str(demo_data / 'annotations.json')
    metrics = test_tool.main([DEMO, str(work_dir / 'epoch_1.pth'), '--work-dir', str(work_dir),
                              '--image-size', '128', '--annotations', annotations,
                              '--images', str(demo_data), '--show-dir', 'overlays'])

    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/gt_box_segm_mAP',
                'coco/gt_box_mask_iou', 'coco/segm_person_precision'):
        assert key in metrics
    printed = capsys.readouterr().out
    assert '| category' in printed
    assert '| person ' in printed
    assert f"{metrics['coco/gt_box_mask_iou']:.3f}" in printed
    overlays = sorted(work_dir.glob('*/overlays/*.png'))
    assert [path.name for path in overlays] == ['2011_000003.png', '2011_000006.png',
                                                '2011_000025.png']
    # Ground truth left and predictions right, each at the photo's size.
    photo = Image.open(demo_data / 'JPEGImages' / '2011_000003.jpg')
    assert Image.open(overlays[0]).size == (2 * photo.width, photo.height)


def test_num_classes_mismatch_stops_before_step_0(demo_data, tmp_path):
    work_dir = tmp_path / 'run'
    flags = demo_flags(demo_data, work_dir, epochs=1)
    flags += ['model.num_classes=5']

    with pytest.raises(ConfigError, match='num_classes=5.*20 categories'):
        train.main(flags)

    assert not list(work_dir.glob('*.pth'))
    assert not read_scalars(work_dir)
