"""tools/train.py on known annotation cases: a run either trains on the right
targets or stops before step 0 with the full report."""
import json

import pytest
import torch

from gsam_mm.errors import AnnotationError

from ..annotation_cases import write_case
from ..conftest import REPO_ROOT, load_tool

train = load_tool('train')

DEMO = str(REPO_ROOT / 'configs' / 'gsam_tiny_demo.py')


def case_flags(tmp_path, case, *options):
    folder = tmp_path / case
    ann_file = write_case(folder, case)
    return [DEMO, '--work-dir', str(tmp_path / 'run'), '--epochs', '1', '--image-size', '64',
            '--annotations', str(ann_file), '--images', str(folder), '--cfg-options',
            'train_dataloader.dataset.times=1', 'train_dataloader.batch_size=1',
            'randomness.seed=0', *options]


def read_scalars(work_dir):
    records = []
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def test_bad_polygon_stops_before_step_0(tmp_path):
    with pytest.raises(AnnotationError, match='annotation 11: polygon ring 0 has 4 numbers'):
        train.main(case_flags(tmp_path, 'c01_polygon_two_points'))

    assert not list((tmp_path / 'run').glob('*.pth'))
    assert not read_scalars(tmp_path / 'run')


def test_skip_switch_trains_on_the_valid_boxes(tmp_path):
    flags = case_flags(tmp_path, 'c06_boxes_outside_or_degenerate',
                       'train_dataloader.dataset.dataset.on_bad_annotation=skip',
                       'val_dataloader.dataset.on_bad_annotation=skip',
                       'test_dataloader.dataset.on_bad_annotation=skip')

    train.main(flags)

    losses = [record['loss'] for record in read_scalars(tmp_path / 'run') if 'loss' in record]
    assert losses
    assert all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert (tmp_path / 'run' / 'epoch_1.pth').is_file()


def test_long_prompt_trains_and_evaluates(tmp_path):
    train.main(case_flags(tmp_path, 'c15_prompt_longer_than_256_tokens'))

    records = read_scalars(tmp_path / 'run')
    losses = [record['loss'] for record in records if 'loss' in record]
    assert losses and all(torch.isfinite(torch.tensor(loss)) for loss in losses)
    assert any('coco/segm_mAP' in record for record in records)
    logs = '\n'.join(path.read_text() for path in (tmp_path / 'run').glob('*/*.log'))
    assert 'Prompt split because it needs more than 256 tokens' in logs
    assert 'caption 4: labels ' in logs
