"""tools/plot_logs.py on scalars.json files written as MMEngine writes them."""
import json

import pytest
from PIL import Image

from gsam_mm.errors import ConfigError

from ..conftest import load_tool

plot_logs = load_tool('plot_logs')


def train_record(epoch: int, iteration: int, loss: float) -> dict:
    return {'lr': 1e-4, 'base_lr': 1e-4, 'loss': loss, 'loss_cls': loss / 2,
            'd0.loss_cls': loss / 2 + 0.1, 'enc.loss_cls': loss / 2 + 0.2, 'loss_mask': 0.5,
            'epoch': epoch, 'iter': iteration, 'step': iteration}


def val_record(epoch: int, value: float) -> dict:
    return {'coco/bbox_mAP': value, 'coco/segm_mAP': value, 'coco/gt_box_segm_mAP': 0.8,
            'coco/gt_box_mask_iou': 0.85, 'coco/segm_mAP_50': value,
            'coco/segm_cat_precision': value, 'step': epoch}


def write_run(folder, records) -> None:
    (folder / 'vis_data').mkdir(parents=True)
    lines = [json.dumps(record) for record in records]
    (folder / 'vis_data' / 'scalars.json').write_text('\n'.join(lines) + '\n')


@pytest.fixture
def work_dir(tmp_path):
    # The first run stopped during epoch 2; the resumed run repeats iteration 6.
    write_run(tmp_path / '20260101_000000', [
        train_record(1, 2, 4.0), train_record(1, 4, 3.0), val_record(1, 0.1),
        train_record(2, 6, 9.9)])
    write_run(tmp_path / '20260101_010000', [
        train_record(2, 6, 2.5), train_record(2, 8, 2.0), val_record(2, 0.2)])
    return tmp_path


def test_later_run_replaces_repeated_steps(work_dir):
    train_records, val_records = plot_logs.read_scalars(work_dir)

    assert [record['iter'] for record in train_records] == [2, 4, 6, 8]
    assert train_records[2]['loss'] == 2.5
    assert [record['step'] for record in val_records] == [1, 2]


def test_fractional_epochs_by_hand(work_dir):
    train_records, _ = plot_logs.read_scalars(work_dir)

    assert plot_logs.fractional_epochs(train_records) == [0.5, 1.0, 1.5, 2.0]


def test_plots_written_and_readable(work_dir, tmp_path):
    written = plot_logs.main([str(work_dir), '--out-dir', str(tmp_path / 'plots')])

    assert [path.name for path in written] == ['losses.png', 'learning_rate.png',
                                               'val_metrics.png']
    for path in written:
        with Image.open(path) as image:
            assert image.format == 'PNG'
            assert image.size[0] >= 600


def test_default_out_dir(work_dir):
    plot_logs.main([str(work_dir)])

    assert (work_dir / 'plots' / 'losses.png').is_file()


def test_missing_scalars_rejected(tmp_path):
    with pytest.raises(ConfigError, match='no \\*/vis_data/scalars.json under'):
        plot_logs.main([str(tmp_path)])
