"""tools/dist_train.sh with two CPU processes (gloo) on the tiny demo model.

The first run trains one epoch, the second resumes it for a second epoch.
`tests/tools/rank_probe.py` records on each rank what is checked here: the
trainable weights after every step, the sampler's share of the dataset and
the parameters DistributedDataParallel syncs. One photo has its annotations
removed, so that a step without objects is followed by another DDP step,
which fails under ``find_unused_parameters=False`` if any trainable
parameter received no gradient.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO_ROOT

DEMO = REPO_ROOT / 'configs' / 'gsam_tiny_demo.py'
DIST_TRAIN = REPO_ROOT / 'tools' / 'dist_train.sh'
WORLD_SIZE = 2
REPEAT_TIMES = 2
PHOTO_COUNT = 3
STEPS_PER_EPOCH = PHOTO_COUNT * REPEAT_TIMES // WORLD_SIZE
EMPTY_IMAGE_ID = 0
# Each run took 40 to 50 s on 2 shared CPU cores; the limit only stops a hang.
RUN_TIMEOUT_S = 300


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def write_inputs(demo_data: Path, folder: Path) -> tuple[Path, Path]:
    """Write the annotations without EMPTY_IMAGE_ID's objects, and a config with the probe."""
    annotations = json.loads((demo_data / 'annotations.json').read_text())
    annotations['annotations'] = [annotation for annotation in annotations['annotations']
                                  if annotation['image_id'] != EMPTY_IMAGE_ID]
    annotation_file = folder / 'annotations.json'
    annotation_file.write_text(json.dumps(annotations))

    config_file = folder / 'dist_config.py'
    config_file.write_text(
        f'_base_ = {str(DEMO)!r}\n'
        "custom_imports = dict(imports=['gsam_mm', 'tests.tools.rank_probe'],\n"
        '                      allow_failed_imports=False)\n'
        "custom_hooks = [dict(type='PromptCheckHook'),\n"
        f"                dict(type='RankProbeHook', out_dir={str(folder)!r})]\n")
    return annotation_file, config_file


def dist_train(config_file: Path, annotation_file: Path, demo_data: Path, work_dir: Path,
               epochs: int, *flags: str) -> str:
    """Run tools/dist_train.sh with WORLD_SIZE processes on 127.0.0.1; return its output."""
    python_path = [str(REPO_ROOT)]
    if os.environ.get('PYTHONPATH'):
        python_path.append(os.environ['PYTHONPATH'])
    env = dict(os.environ, PYTHON=sys.executable, MASTER_ADDR='127.0.0.1',
               PORT=str(free_local_port()), PYTHONPATH=os.pathsep.join(python_path),
               HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', OMP_NUM_THREADS='1')
    command = ['bash', str(DIST_TRAIN), str(config_file), str(WORLD_SIZE),
               '--work-dir', str(work_dir), '--epochs', str(epochs), '--batch-size', '1',
               '--image-size', '128', '--annotations', str(annotation_file),
               '--images', str(demo_data), *flags,
               '--cfg-options', f'train_dataloader.dataset.times={REPEAT_TIMES}',
               'default_hooks.checkpoint.max_keep_ckpts=1',
               'default_hooks.checkpoint.save_trainable_only=True']
    # A session of its own, so that a timeout stops torchrun and its workers.
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f'dist_train.sh timed out after {RUN_TIMEOUT_S} s:\n{output[-5000:]}')
    assert process.returncode == 0, output[-5000:]
    return output


def read_runs(folder: Path, rank: int) -> list[list[dict]]:
    """Return the probe records of one rank, split into runs at each before_train."""
    runs: list[list[dict]] = []
    for line in (folder / f'rank{rank}.jsonl').read_text().splitlines():
        record = json.loads(line)
        if record['event'] == 'before_train':
            runs.append([])
        runs[-1].append(record)
    return runs


def events(run: list[dict], name: str) -> list[dict]:
    return [record for record in run if record['event'] == name]


def check_ranks_in_step(runs_by_rank: list[list[dict]]) -> None:
    """Check one run: the same weights on every rank, and each rank its own samples."""
    starts = [events(run, 'before_train')[0] for run in runs_by_rank]
    assert len({start['digest'] for start in starts}) == 1
    for start in starts:
        assert start['ddp_tensors'] == start['trainable_tensors']
        assert start['frozen_tensors'] > 0
        assert start['find_unused_parameters'] is False

    epoch_shares = [events(run, 'epoch')[0]['sampler_indices'] for run in runs_by_rank]
    assert all(len(share) == STEPS_PER_EPOCH for share in epoch_shares)
    assert sorted(sum(epoch_shares, [])) == list(range(PHOTO_COUNT * REPEAT_TIMES))

    steps_by_rank = [events(run, 'iter') for run in runs_by_rank]
    assert all(len(steps) == STEPS_PER_EPOCH for steps in steps_by_rank)
    for steps in zip(*steps_by_rank):
        assert len({step['digest'] for step in steps}) == 1
    digests = [starts[0]['digest']] + [step['digest'] for step in steps_by_rank[0]]
    assert all(before != after for before, after in zip(digests, digests[1:]))


def test_two_processes_train_and_resume(demo_data, tmp_path):
    annotation_file, config_file = write_inputs(demo_data, tmp_path)
    work_dir = tmp_path / 'run'

    first_output = dist_train(config_file, annotation_file, demo_data, work_dir, 1)

    first_runs = [read_runs(tmp_path, rank)[0] for rank in range(WORLD_SIZE)]
    check_ranks_in_step(first_runs)
    empty_steps = [step['iter'] for run in first_runs for step in events(run, 'iter')
                   if step['instances'] == [0]]
    assert any(iteration < STEPS_PER_EPOCH - 1 for iteration in empty_steps)
    assert first_output.count('Distributed training on 2 processes') == 1
    assert (work_dir / 'epoch_1.pth').is_file()
    assert not list(work_dir.glob('.*.partial'))

    second_output = dist_train(config_file, annotation_file, demo_data, work_dir, 2,
                               '--resume')

    second_runs = [read_runs(tmp_path, rank)[1] for rank in range(WORLD_SIZE)]
    check_ranks_in_step(second_runs)
    first_final_digest = events(first_runs[0], 'iter')[-1]['digest']
    for run in second_runs:
        start = events(run, 'before_train')[0]
        assert start['epoch'] == 1
        assert start['iter'] == STEPS_PER_EPOCH
        assert start['digest'] == first_final_digest
    assert (work_dir / 'last_checkpoint').read_text() == str(work_dir / 'epoch_2.pth')
    assert not (work_dir / 'epoch_1.pth').exists()
    assert second_output.count(f'Removed checkpoint {work_dir / "epoch_1.pth"}') == 1
    assert 'does not exist' not in second_output
    assert not list(work_dir.glob('.*.partial'))
    log_files = sorted(work_dir.glob('*/*.log'))
    assert len(log_files) == 2
