"""EpochCheckpointHook inside a real, tiny MMEngine Runner (see toy_runner.py)."""
import copy
import functools
import os
import pickle
from pathlib import Path

import pytest
import torch
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

from gsam_mm.engine import EpochCheckpointHook
from gsam_mm.engine.hooks.epoch_checkpoint_hook import TRAINABLE_ONLY_META_KEY
from gsam_mm.errors import ConfigError
from tests.engine.toy_runner import (BASE_LR, ITERS_PER_EPOCH, LR_GAMMA, FrozenBackbone,
                                     InterruptHook)

BEST_METRIC = 'coco/segm_mAP'
FROZEN_KEYS = ['backbone.linear.bias', 'backbone.linear.weight',
               'backbone.norm.bias', 'backbone.norm.weight']


def checkpoint_hook_cfg(**kwargs) -> dict:
    return dict(type='EpochCheckpointHook', interval=1, **kwargs)


def load(path: Path) -> dict:
    return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def partial_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith('.partial')]


def current_lr(runner) -> float:
    return runner.optim_wrapper.optimizer.param_groups[0]['lr']


def clone_state(state: dict) -> dict:
    return {key: value.clone() for key, value in state.items()}


def assert_states_equal(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0, msg=key)


class ResumeRecorder(Hook):
    """Records the runner state that training starts from."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self.epoch = runner.epoch
        self.iter = runner.iter
        self.lr = current_lr(runner)
        # Copied because training updates the optimizer state tensors in place.
        self.optimizer_state = copy.deepcopy(runner.optim_wrapper.state_dict())
        self.best_score = runner.message_hub.get_info('best_score')


def test_hook_builds_from_both_registries():
    for registry in (MMDET_HOOKS, MMENGINE_HOOKS):
        hook = registry.build(checkpoint_hook_cfg(save_best=BEST_METRIC))
        assert isinstance(hook, EpochCheckpointHook)
        assert hook.rules == ['greater']


@pytest.mark.parametrize('kwargs, expected_fragments', [
    (dict(max_keep_ckpts=0), ['max_keep_ckpts', 'got 0']),
    (dict(interval=0), ['interval', 'got 0']),
    (dict(by_epoch=False), ['by_epoch', 'got False']),
    (dict(filename_tmpl='epoch.pth'), ['filename_tmpl', "got 'epoch.pth'"]),
    (dict(save_begin=-1), ['save_begin', 'got -1']),
    (dict(save_trainable_only='yes'), ['save_trainable_only', "got 'yes'"]),
    (dict(save_best=['a', 'a']), ['save_best', "got ['a', 'a']"]),
    (dict(save_best=BEST_METRIC, rule='bigger'), ['rule', '"greater", "less"', "got 'bigger'"]),
    (dict(save_best='score_of_run'), ['Cannot infer the rule', 'score_of_run']),
])
def test_hook_rejects_invalid_arguments(kwargs, expected_fragments):
    with pytest.raises(ConfigError) as error:
        EpochCheckpointHook(**kwargs)
    for fragment in expected_fragments:
        assert fragment in str(error.value)


def test_epoch_files_keep_last_and_best(tmp_path, build_runner):
    runner = build_runner(tmp_path, checkpoint_hook_cfg(max_keep_ckpts=2, save_best=BEST_METRIC))
    runner.train()

    names = sorted(os.listdir(tmp_path))
    assert 'epoch_1.pth' not in names
    assert 'epoch_2.pth' in names
    assert 'epoch_3.pth' in names
    assert 'best_coco_segm_mAP_epoch_1.pth' not in names
    assert 'best_coco_segm_mAP_epoch_2.pth' in names
    assert 'best_coco_segm_mAP_epoch_3.pth' not in names
    assert partial_files(tmp_path) == []
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_3.pth')

    logs = runner.log_collector
    for epoch in (1, 2, 3):
        assert logs.contains(f'Saved checkpoint {tmp_path / f"epoch_{epoch}.pth"}')
    assert logs.contains(f'Removed checkpoint {tmp_path / "epoch_1.pth"} (max_keep_ckpts=2)')
    assert logs.contains(f'Removed checkpoint {tmp_path / "best_coco_segm_mAP_epoch_1.pth"}')
    assert logs.contains(f'New best {BEST_METRIC} 0.5000 at epoch 2')


def test_epoch_checkpoint_contents(tmp_path, build_runner):
    runner = build_runner(tmp_path, checkpoint_hook_cfg(save_best=BEST_METRIC), max_epochs=2)
    runner.train()

    checkpoint = load(tmp_path / 'epoch_2.pth')
    assert checkpoint['meta']['epoch'] == 2
    assert checkpoint['meta']['iter'] == 2 * ITERS_PER_EPOCH
    assert TRAINABLE_ONLY_META_KEY not in checkpoint['meta']
    assert 'backbone.linear.weight' in checkpoint['state_dict']
    assert checkpoint['optimizer']['param_groups'][0]['lr'] == pytest.approx(BASE_LR * LR_GAMMA**2)
    assert any('momentum_buffer' in state for state in checkpoint['optimizer']['state'].values())
    assert checkpoint['param_schedulers'][0]['last_step'] == 2
    runtime_info = checkpoint['message_hub']['runtime_info']
    # Epoch 2 was saved again after its validation, so it records its own best.
    assert runtime_info['best_score'] == 0.5
    assert runtime_info['best_ckpt'] == str(tmp_path / 'best_coco_segm_mAP_epoch_2.pth')
    assert runtime_info['last_ckpt'] == str(tmp_path / 'epoch_2.pth')

    best = load(tmp_path / 'best_coco_segm_mAP_epoch_2.pth')
    assert 'optimizer' not in best
    assert best['meta']['epoch'] == 2


def fail_epoch_2_write_halfway(monkeypatch) -> None:
    """Make the write of any file named like epoch 2 stop halfway with a full disk."""
    original_put = LocalBackend.put

    def put_half_then_fail(backend, data: bytes, filepath) -> None:
        if 'epoch_2' not in str(filepath):
            return original_put(backend, data, filepath)
        original_put(backend, data[:len(data) // 2], filepath)
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(LocalBackend, 'put', put_half_then_fail)


def test_failed_save_keeps_previous_checkpoint(tmp_path, build_runner, monkeypatch):
    fail_epoch_2_write_halfway(monkeypatch)
    runner = build_runner(tmp_path, checkpoint_hook_cfg(max_keep_ckpts=1), max_epochs=2)
    with pytest.raises(OSError, match='No space left'):
        runner.train()

    assert not (tmp_path / 'epoch_2.pth').exists()
    assert partial_files(tmp_path) == []
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert load(tmp_path / 'epoch_1.pth')['meta']['epoch'] == 1
    assert runner.log_collector.contains(f'Failed to write checkpoint {tmp_path / "epoch_2.pth"}')


def test_failed_save_with_mmengine_hook_truncates(tmp_path, build_runner, monkeypatch):
    """The same failure with MMEngine's CheckpointHook, which the test above guards against."""
    fail_epoch_2_write_halfway(monkeypatch)
    runner = build_runner(tmp_path, dict(type='CheckpointHook', interval=1, max_keep_ckpts=1),
                          max_epochs=2)
    with pytest.raises(OSError, match='No space left'):
        runner.train()

    assert not (tmp_path / 'epoch_1.pth').exists()
    assert (tmp_path / 'epoch_2.pth').exists()
    # torch reports a truncated zip archive as one of these, depending on where it ends.
    with pytest.raises((RuntimeError, OSError)):
        load(tmp_path / 'epoch_2.pth')


def test_partial_file_of_killed_run_removed(tmp_path, build_runner):
    leftover = tmp_path / '.epoch_5.pth.4242.partial'
    leftover.write_bytes(b'truncated')
    runner = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=1)
    runner.train()

    assert not leftover.exists()
    assert runner.log_collector.contains(f'Removed {leftover}, an unfinished checkpoint file')


def test_trainable_only_checkpoint_is_smaller(tmp_path, build_runner):
    build_runner(tmp_path / 'full', checkpoint_hook_cfg(), max_epochs=1).train()
    runner = build_runner(tmp_path / 'trainable', checkpoint_hook_cfg(save_trainable_only=True),
                          max_epochs=1)
    runner.train()

    full_size = (tmp_path / 'full' / 'epoch_1.pth').stat().st_size
    trainable_size = (tmp_path / 'trainable' / 'epoch_1.pth').stat().st_size
    assert trainable_size < full_size / 2

    checkpoint = load(tmp_path / 'trainable' / 'epoch_1.pth')
    assert sorted(checkpoint['meta'][TRAINABLE_ONLY_META_KEY]) == FROZEN_KEYS
    state_keys = set(checkpoint['state_dict'])
    assert state_keys.isdisjoint(FROZEN_KEYS)
    assert {'head.weight', 'head.bias'} <= state_keys
    # BatchNorm statistics of the frozen backbone change in train mode, so they stay.
    assert {'backbone.norm.running_mean', 'backbone.norm.running_var'} <= state_keys
    assert runner.log_collector.contains('trainable parameters only, 4 frozen parameter tensors')


def test_trainable_only_loads_into_full_model(tmp_path, build_runner, capsys):
    trained = build_runner(tmp_path / 'train', checkpoint_hook_cfg(save_trainable_only=True),
                           max_epochs=2)
    trained.train()
    trained_state = clone_state(trained.model.state_dict())
    inputs = torch.randn(4, trained.model.backbone.linear.in_features)
    trained.model.eval()
    expected_outputs = trained.model(inputs)
    capsys.readouterr()

    # Runner.val(), like tools/test.py, loads the checkpoint without calling init_weights.
    evaluator = build_runner(tmp_path / 'eval', checkpoint_hook_cfg(),
                             load_from=str(tmp_path / 'train' / 'epoch_2.pth'))
    evaluator.val()

    assert 'missing keys' not in capsys.readouterr().out
    assert evaluator.log_collector.contains('4 frozen parameter tensors keep the values')
    assert_states_equal(evaluator.model.state_dict(), trained_state)
    evaluator.model.eval()
    torch.testing.assert_close(evaluator.model(inputs), expected_outputs, rtol=0, atol=0)


def test_trainable_only_other_pretrained_rejected(tmp_path, build_runner):
    build_runner(tmp_path / 'train', checkpoint_hook_cfg(save_trainable_only=True),
                 max_epochs=1).train()
    other = tmp_path / 'other_backbone.pth'
    torch.manual_seed(7)
    torch.save(FrozenBackbone(pretrained='unused').state_dict(), other)

    evaluator = build_runner(tmp_path / 'eval', checkpoint_hook_cfg(),
                             load_from=str(tmp_path / 'train' / 'epoch_1.pth'))
    evaluator.model.backbone.init_cfg['checkpoint'] = str(other)

    with pytest.raises(ConfigError, match='frozen parameters of backbone.linear, '
                                          'backbone.norm differ from those it was trained'):
        evaluator.val()


def test_trainable_only_without_hook_misses_keys(tmp_path, build_runner, capsys):
    build_runner(tmp_path / 'train', checkpoint_hook_cfg(save_trainable_only=True),
                 max_epochs=1).train()
    capsys.readouterr()

    evaluator = build_runner(tmp_path / 'eval', dict(type='CheckpointHook', interval=1),
                             load_from=str(tmp_path / 'train' / 'epoch_1.pth'))
    evaluator.val()

    assert 'missing keys in source state_dict: backbone.linear.weight' in capsys.readouterr().out


def _patch_amp_for_cpu(monkeypatch) -> None:
    """Let AmpOptimWrapper run on CPU with torch's CPU GradScaler.

    AmpOptimWrapper (MMEngine 0.10.7) asserts that CUDA, NPU, MLU or MUSA is
    available and builds torch.cuda.amp.GradScaler, which disables itself
    without CUDA and then has an empty state dict.
    """
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp_optimizer_wrapper, 'GradScaler',
                        functools.partial(torch.amp.GradScaler, 'cpu'))


RESUME_CASES = {
    'sgd': dict(save_trainable_only=False, amp=False),
    'sgd_trainable_only': dict(save_trainable_only=True, amp=False),
    'amp_loss_scaler': dict(save_trainable_only=False, amp=True),
}


@pytest.mark.parametrize('case', RESUME_CASES)
def test_resume_matches_uninterrupted_run(tmp_path, build_runner, monkeypatch, case):
    settings = RESUME_CASES[case]
    hook_cfg = checkpoint_hook_cfg(save_best=BEST_METRIC,
                                   save_trainable_only=settings['save_trainable_only'])
    optim_wrapper = None
    if settings['amp']:
        _patch_amp_for_cpu(monkeypatch)
        # growth_interval=1 doubles the scale every step, so it differs per epoch.
        optim_wrapper = dict(type='AmpOptimWrapper',
                             loss_scale=dict(init_scale=4.0, growth_interval=1),
                             optimizer=dict(type='SGD', lr=BASE_LR, momentum=0.9))

    uninterrupted = build_runner(tmp_path / 'uninterrupted', hook_cfg,
                                 optim_wrapper=optim_wrapper)
    uninterrupted.train()

    interrupted_dir = tmp_path / 'interrupted'
    interrupted = build_runner(interrupted_dir, hook_cfg, optim_wrapper=optim_wrapper,
                               custom_hooks=(InterruptHook(after_epoch=2),))
    with pytest.raises(RuntimeError, match='simulated crash'):
        interrupted.train()
    saved = load(interrupted_dir / 'epoch_2.pth')

    recorder = ResumeRecorder()
    resumed = build_runner(interrupted_dir, hook_cfg, optim_wrapper=optim_wrapper,
                           custom_hooks=(recorder,), resume=True)
    resumed.train()

    assert recorder.epoch == 2
    assert recorder.iter == 2 * ITERS_PER_EPOCH
    assert recorder.lr == pytest.approx(BASE_LR * LR_GAMMA**2)
    assert recorder.best_score == 0.3
    assert recorder.optimizer_state['state'].keys() == saved['optimizer']['state'].keys()
    for param_index, saved_state in saved['optimizer']['state'].items():
        resumed_state = recorder.optimizer_state['state'][param_index]
        torch.testing.assert_close(resumed_state['momentum_buffer'],
                                   saved_state['momentum_buffer'], rtol=0, atol=0)
    if settings['amp']:
        assert saved['optimizer']['loss_scaler']['scale'] == 4.0 * 2**(2 * ITERS_PER_EPOCH)
        assert recorder.optimizer_state['loss_scaler'] == saved['optimizer']['loss_scaler']
        assert (resumed.optim_wrapper.loss_scaler.state_dict()
                == uninterrupted.optim_wrapper.loss_scaler.state_dict())

    assert current_lr(resumed) == current_lr(uninterrupted)
    assert_states_equal(resumed.model.state_dict(), uninterrupted.model.state_dict())
    last_checkpoint = (interrupted_dir / 'last_checkpoint').read_text()
    assert last_checkpoint == str(interrupted_dir / 'epoch_3.pth')


def test_resume_fails_with_mmengine_loader(tmp_path, build_runner, monkeypatch):
    """Without gsam_mm's loader, torch's weights-only default rejects the Runner's checkpoints."""
    build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=1).train()
    schemes = dict(CheckpointLoader._schemes)
    schemes[''] = mmengine_checkpoint.load_from_local
    monkeypatch.setattr(CheckpointLoader, '_schemes', schemes)

    resumed = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=2, resume=True)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load failed'):
        resumed.train()


def test_ranks_resuming_apart_stop(tmp_path, build_runner, monkeypatch):
    """A second machine that cannot read rank 0's checkpoints starts at epoch 0."""
    build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=1).train()
    hook_module = 'gsam_mm.engine.hooks.epoch_checkpoint_hook'
    monkeypatch.setattr(f'{hook_module}.get_world_size', lambda: 2)
    monkeypatch.setattr(f'{hook_module}.all_gather_object',
                        lambda position: [position, (0, 0)])

    resumed = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=2, resume=True)
    with pytest.raises(ConfigError) as error:
        resumed.train()

    message = str(error.value)
    assert f'rank 0: epoch 1, iteration {ITERS_PER_EPOCH}' in message
    assert 'rank 1: epoch 0, iteration 0' in message
    assert 'shared file system' in message


def test_ranks_resuming_together_train(tmp_path, build_runner, monkeypatch):
    build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=1).train()
    hook_module = 'gsam_mm.engine.hooks.epoch_checkpoint_hook'
    monkeypatch.setattr(f'{hook_module}.get_world_size', lambda: 2)
    monkeypatch.setattr(f'{hook_module}.all_gather_object', lambda position: [position] * 2)

    resumed = build_runner(tmp_path, checkpoint_hook_cfg(), max_epochs=2, resume=True)
    resumed.train()

    assert (tmp_path / 'epoch_2.pth').is_file()
