"""Process group and DistributedDataParallel settings for multi-process training.

``tools/train.py --launcher pytorch`` (under torchrun) and ``--launcher slurm``
(under srun) start one process per GPU. MMEngine's ``init_dist`` calls
``torch.cuda.set_device``, which fails on a machine without a GPU. So without
CUDA the ``pytorch`` launcher is served here with the gloo backend, which lets
tests and CPU-only machines run the same code path.
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import get_world_size, init_dist, is_distributed
from mmengine.logging import print_log

from ..errors import ConfigError

# Environment variables torchrun sets for every process it starts.
TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')

DDP_WRAPPER = 'MMDistributedDataParallel'


def init_distributed(cfg: Config) -> None:
    """Start the process group of ``cfg.launcher`` unless one exists.

    With CUDA this is MMEngine's ``init_dist`` with ``env_cfg.dist_cfg``
    (NCCL in the configs). Without CUDA only the ``pytorch`` launcher works,
    and it uses gloo. Starting the group before the Runner exists means that
    the log lines written while the config is prepared come from rank 0 only.

    Raises:
        ConfigError: without CUDA for the ``slurm`` and ``mpi`` launchers, or
            when torchrun's environment variables are missing.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or is_distributed():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if torch.cuda.is_available():
        init_dist(launcher, **dist_cfg)
        return

    if launcher != 'pytorch':
        raise ConfigError(f'--launcher {launcher} needs CUDA GPUs, and none was found. '
                          'To train on CPUs, start tools/dist_train.sh (torchrun) with '
                          '--launcher pytorch.')
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(f'--launcher pytorch expects the environment variables '
                          f'{", ".join(missing)}, which torchrun sets. Start the run with '
                          'tools/dist_train.sh CONFIG NUM_PROCESSES.')
    timeout = dist_cfg.get('timeout')
    # Recorded so that the config the Runner dumps names the backend in use.
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    torch_dist.init_process_group(
        backend='gloo',
        timeout=None if timeout is None else datetime.timedelta(seconds=timeout))


def finish_distributed() -> None:
    """Destroy the process group after a run, so that its threads stop while
    Python is still running.

    NOTE: once, on a loaded machine, rank 0 of a finished two-process gloo
    run aborted at exit ("terminate called without an active exception").
    Whether this call prevents that is not established.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def select_model_wrapper(cfg: Config) -> None:
    """Set ``cfg.model_wrapper_cfg`` for a distributed run (in place).

    The wrapper is MMEngine's DistributedDataParallel, unless the config names
    its own. DDP all-reduces only the parameters with ``requires_grad=True``,
    so the frozen parts cost no communication. ``find_unused_parameters``
    comes from the config's top-level value (False in the configs, because
    GroundingSAM gives every trainable parameter a gradient in every step).
    On the CPU, DDP needs ``device_ids=None``.
    """
    if cfg.get('launcher', 'none') == 'none':
        return
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        wrapper = dict(type=DDP_WRAPPER, broadcast_buffers=False,
                       find_unused_parameters=bool(cfg.get('find_unused_parameters', False)))
    if not torch.cuda.is_available() and wrapper.get('type', DDP_WRAPPER) == DDP_WRAPPER:
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    print_log(f'Distributed training on {get_world_size()} processes with '
              f'{wrapper.get("type", DDP_WRAPPER)} '
              f'(find_unused_parameters={wrapper.get("find_unused_parameters", False)})',
              logger='current')
