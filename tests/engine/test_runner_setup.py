"""Precision and optimizer implementation chosen by select_optim_wrapper.

CUDA's presence and bfloat16 support are patched, so these run on the CPU;
the last test builds the selected wrapper for real where it can.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from gsam_mm.engine.runner_setup import select_optim_wrapper

from ..conftest import REPO_ROOT

VITH = REPO_ROOT / 'configs' / 'gsam_vith.py'


def vith_config() -> Config:
    return Config.fromfile(VITH)


def patch_one_gpu(monkeypatch, native_bf16: bool) -> None:
    """Patch a GPU that computes bfloat16 natively, or only emulates it
    (torch then reports support unless ``including_emulation=False``)."""
    # device_count too, because MMEngine's logger reads the device id.
    monkeypatch.setattr('torch.cuda.is_available', lambda: True)
    monkeypatch.setattr('torch.cuda.device_count', lambda: 1)
    monkeypatch.setattr('torch.cuda.is_bf16_supported',
                        lambda including_emulation=True: native_bf16 or including_emulation)


@pytest.fixture
def cuda_with_bf16(monkeypatch):
    patch_one_gpu(monkeypatch, native_bf16=True)


@pytest.fixture
def cuda_without_bf16(monkeypatch):
    patch_one_gpu(monkeypatch, native_bf16=False)


def test_bf16_gpu_autocasts_bfloat16(cuda_with_bf16):
    cfg = vith_config()
    select_optim_wrapper(cfg, amp_requested=False)

    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == 1.0


def test_emulated_bf16_gpu_uses_float16(cuda_without_bf16):
    cfg = vith_config()
    select_optim_wrapper(cfg, amp_requested=False)

    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_cuda_fuses_adamw(cuda_with_bf16):
    cfg = vith_config()
    select_optim_wrapper(cfg, amp_requested=False)

    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.fused is True
    # The other AdamW settings are untouched.
    assert cfg.optim_wrapper.optimizer.lr == 1e-4
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4


def test_cuda_leaves_unfusable_optimizer(cuda_with_bf16):
    cfg = vith_config()
    cfg.optim_wrapper.optimizer = dict(type='RMSprop', lr=1e-4)
    select_optim_wrapper(cfg, amp_requested=False)

    assert 'fused' not in cfg.optim_wrapper.optimizer


def test_config_precision_choices_kept(cuda_with_bf16):
    cfg = vith_config()
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'float16'
    cfg.optim_wrapper.loss_scale = 512.0
    cfg.optim_wrapper.optimizer.fused = False
    select_optim_wrapper(cfg, amp_requested=False)

    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.optim_wrapper.loss_scale == 512.0
    assert cfg.optim_wrapper.optimizer.fused is False


def test_cpu_keeps_float32_unfused(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = vith_config()
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.optim_wrapper.loss_scale = 1.0
    select_optim_wrapper(cfg, amp_requested=True)

    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert 'dtype' not in cfg.optim_wrapper
    assert 'loss_scale' not in cfg.optim_wrapper
    assert 'fused' not in cfg.optim_wrapper.optimizer


def test_cpu_wrapper_builds_and_steps(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    cfg = vith_config()
    select_optim_wrapper(cfg, amp_requested=False)
    model = torch.nn.Linear(4, 1)
    optim_config = {key: value for key, value in cfg.optim_wrapper.items()
                    if key != 'paramwise_cfg'}

    optim_wrapper = build_optim_wrapper(model, optim_config)
    optim_wrapper.update_params(model(torch.ones(2, 4)).sum())

    assert type(optim_wrapper.optimizer).__name__ == 'AdamW'
    assert optim_wrapper.optimizer.defaults['fused'] is None
