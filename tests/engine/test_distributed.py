"""Process-group start and DDP wrapper settings, with and without CUDA.

The real two-process run is in tests/tools/test_dist_train.py. Here CUDA's
presence is patched, and only the teardown tests start a process group, of
one process on the loopback address.
"""
import socket

import pytest
import torch.distributed as torch_dist
from mmengine.config import Config

from gsam_mm.engine import distributed
from gsam_mm.engine.distributed import (TORCHRUN_VARIABLES, finish_distributed, init_distributed,
                                        select_model_wrapper)
from gsam_mm.errors import ConfigError

from ..conftest import REPO_ROOT

VITH = REPO_ROOT / 'configs' / 'gsam_vith.py'


def vith_config(launcher: str) -> Config:
    cfg = Config.fromfile(VITH)
    cfg.launcher = launcher
    return cfg


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)


@pytest.fixture
def with_cuda(monkeypatch):
    monkeypatch.setattr('torch.cuda.is_available', lambda: True)


@pytest.fixture
def init_calls(monkeypatch) -> dict:
    """Record the process groups that would be started, instead of starting them."""
    calls = dict(mmengine=[], torch=[])
    monkeypatch.setattr(distributed, 'is_distributed', lambda: False)
    monkeypatch.setattr(distributed, 'init_dist',
                        lambda launcher, **kwargs: calls['mmengine'].append((launcher, kwargs)))
    monkeypatch.setattr(distributed.torch_dist, 'init_process_group',
                        lambda **kwargs: calls['torch'].append(kwargs))
    return calls


@pytest.fixture
def torchrun_environment(monkeypatch):
    for name, value in zip(TORCHRUN_VARIABLES, ('1', '2', '1', '127.0.0.1', '29511')):
        monkeypatch.setenv(name, value)


def test_single_process_keeps_plain_model(no_cuda, init_calls):
    cfg = vith_config('none')
    init_distributed(cfg)
    select_model_wrapper(cfg)

    assert init_calls == dict(mmengine=[], torch=[])
    assert 'model_wrapper_cfg' not in cfg


def test_cpu_ddp_uses_gloo(no_cuda, init_calls, torchrun_environment):
    cfg = vith_config('pytorch')
    init_distributed(cfg)

    assert init_calls['mmengine'] == []
    assert len(init_calls['torch']) == 1
    assert init_calls['torch'][0]['backend'] == 'gloo'
    assert init_calls['torch'][0]['timeout'] is None
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_cpu_ddp_wrapper_without_device_ids(no_cuda):
    cfg = vith_config('pytorch')
    select_model_wrapper(cfg)

    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         broadcast_buffers=False,
                                         find_unused_parameters=False, device_ids=None)


def test_cuda_ddp_uses_config_backend(with_cuda, init_calls):
    cfg = vith_config('slurm')
    cfg.env_cfg.dist_cfg.timeout = 600
    init_distributed(cfg)

    assert init_calls['torch'] == []
    assert init_calls['mmengine'] == [('slurm', dict(backend='nccl', timeout=600))]


def test_cuda_ddp_wrapper_leaves_device_to_mmengine(with_cuda):
    cfg = vith_config('pytorch')
    select_model_wrapper(cfg)

    # The Runner adds device_ids=[LOCAL_RANK] for DistributedDataParallel types.
    assert 'device_ids' not in cfg.model_wrapper_cfg
    assert cfg.model_wrapper_cfg.find_unused_parameters is False


def test_config_find_unused_parameters_used(no_cuda):
    cfg = vith_config('pytorch')
    cfg.find_unused_parameters = True
    select_model_wrapper(cfg)

    assert cfg.model_wrapper_cfg.find_unused_parameters is True


def test_config_model_wrapper_kept(with_cuda):
    cfg = vith_config('pytorch')
    cfg.model_wrapper_cfg = dict(type='MMFullyShardedDataParallel')
    select_model_wrapper(cfg)

    assert cfg.model_wrapper_cfg == dict(type='MMFullyShardedDataParallel')


@pytest.mark.parametrize('launcher', ['slurm', 'mpi'])
def test_cpu_rejects_gpu_only_launchers(no_cuda, init_calls, launcher):
    with pytest.raises(ConfigError, match=f'--launcher {launcher} needs CUDA'):
        init_distributed(vith_config(launcher))
    assert init_calls == dict(mmengine=[], torch=[])


def test_cpu_without_torchrun_names_variables(no_cuda, init_calls, monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('RANK', '0')

    with pytest.raises(ConfigError) as error:
        init_distributed(vith_config('pytorch'))

    assert 'WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT' in str(error.value)
    assert 'tools/dist_train.sh' in str(error.value)
    assert init_calls == dict(mmengine=[], torch=[])


def test_finish_destroys_process_group():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    torch_dist.init_process_group(backend='gloo', init_method=f'tcp://127.0.0.1:{port}',
                                  rank=0, world_size=1)
    try:
        finish_distributed()

        assert not torch_dist.is_initialized()
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def test_finish_without_process_group():
    finish_distributed()

    assert not torch_dist.is_initialized()
