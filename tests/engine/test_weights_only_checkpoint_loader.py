"""The local checkpoint loader that gsam_mm.engine installs into MMEngine."""
import argparse
import pickle
import uuid

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

from gsam_mm.engine import load_from_local
from gsam_mm.engine.checkpoint_loader import _get_history_buffer_statistic


def save_runner_like_checkpoint(path, **extra_meta) -> None:
    """Save the kinds of objects Runner.save_checkpoint stores."""
    message_hub = MessageHub.get_instance(f'checkpoint_loader_test_{uuid.uuid4().hex}')
    message_hub.update_scalar('train/loss', 0.25)
    message_hub.update_scalar('train/loss', 0.5)
    message_hub.update_info('best_score', np.float64(0.625))
    message_hub.update_info('keep_ckpt_ids', [1, 2])
    checkpoint = dict(
        meta=dict(epoch=2, iter=8, dataset_meta=dict(palette=np.array([[1, 2, 3]], np.uint8)),
                  **extra_meta),
        state_dict={'head.weight': torch.ones(2, 2)},
        message_hub=message_hub.state_dict(),
        optimizer=dict(state={}, param_groups=[dict(lr=0.1, betas=(0.9, 0.999), params=[0])],
                       loss_scaler=dict(scale=1024.0, _growth_tracker=3)),
    )
    torch.save(checkpoint, path)


def test_mmengine_loader_rejects_message_hub(tmp_path):
    path = tmp_path / 'epoch_2.pth'
    save_runner_like_checkpoint(path)

    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        mmengine_checkpoint.load_from_local(str(path), map_location='cpu')


def test_loader_is_registered_for_local_paths():
    assert CheckpointLoader._get_checkpoint_loader('/work_dirs/run/epoch_1.pth') is load_from_local
    assert CheckpointLoader._get_checkpoint_loader('https://host/model.pth') is not load_from_local


def test_loader_restores_message_hub(tmp_path):
    path = tmp_path / 'epoch_2.pth'
    save_runner_like_checkpoint(path)

    checkpoint = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')

    loss_history = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss_history, HistoryBuffer)
    np.testing.assert_array_equal(loss_history.data[0], [0.25, 0.5])
    assert loss_history.mean() == 0.375
    runtime_info = checkpoint['message_hub']['runtime_info']
    assert runtime_info['best_score'] == np.float64(0.625)
    assert runtime_info['keep_ckpt_ids'] == [1, 2]
    np.testing.assert_array_equal(checkpoint['meta']['dataset_meta']['palette'], [[1, 2, 3]])
    assert checkpoint['optimizer']['loss_scaler']['scale'] == 1024.0
    torch.testing.assert_close(checkpoint['state_dict']['head.weight'], torch.ones(2, 2))


def test_loader_leaves_safe_globals_unchanged(tmp_path):
    path = tmp_path / 'epoch_2.pth'
    save_runner_like_checkpoint(path)
    allowed_before = set(torch.serialization.get_safe_globals())

    load_from_local(str(path))
    assert set(torch.serialization.get_safe_globals()) == allowed_before

    # An entry the user allowed before the load is still allowed after it.
    with torch.serialization.safe_globals([np.ndarray]):
        load_from_local(str(path))
        assert np.ndarray in torch.serialization.get_safe_globals()


def test_loader_rejects_unlisted_type(tmp_path):
    path = tmp_path / 'foreign.pth'
    save_runner_like_checkpoint(path, args=argparse.Namespace(lr=0.1))

    with pytest.raises(pickle.UnpicklingError) as error:
        load_from_local(str(path))
    message = str(error.value)
    assert str(path) in message
    assert 'argparse.Namespace' in message
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1' in message


def test_loader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth not found'):
        load_from_local(str(tmp_path / 'missing.pth'))


def test_getattr_limited_to_statistics():
    assert _get_history_buffer_statistic(HistoryBuffer, 'mean') is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError, match='only allows getattr'):
        _get_history_buffer_statistic(HistoryBuffer, 'update')
    with pytest.raises(pickle.UnpicklingError, match='only allows getattr'):
        _get_history_buffer_statistic(MessageHub, 'mean')
