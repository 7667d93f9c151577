"""Fixtures that build the tiny Runner of toy_runner.py."""
import uuid
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.hooks import Hook
from mmengine.runner import Runner

import gsam_mm.engine  # noqa: F401  (registers the hook and the checkpoint loader)
from tests.engine.toy_runner import (BASE_LR, LR_GAMMA, FrozenBackbone, LogCollector,
                                     ToyModel, ToySegmMetric, dataloader_cfg)


@pytest.fixture(scope='session')
def pretrained_backbone(tmp_path_factory) -> str:
    """Path of a pretrained backbone state dict."""
    torch.manual_seed(123)
    backbone = FrozenBackbone(pretrained='unused')
    with torch.no_grad():
        backbone.norm.weight.uniform_(0.5, 1.5)
        backbone.norm.bias.uniform_(-0.1, 0.1)
    path = tmp_path_factory.mktemp('pretrained') / 'backbone.pth'
    torch.save(backbone.state_dict(), path)
    return str(path)


@pytest.fixture
def build_runner(pretrained_backbone) -> Callable[..., Runner]:
    """Return a factory of toy Runners; each gets a log collector as `runner.log_collector`."""

    def build(work_dir: Path,
              checkpoint_hook: dict,
              *,
              max_epochs: int = 3,
              scores: tuple[float, ...] = (0.3, 0.5, 0.4),
              custom_hooks: tuple[Hook, ...] = (),
              optim_wrapper: Optional[dict] = None,
              resume: bool = False,
              load_from: Optional[str] = None) -> Runner:
        if optim_wrapper is None:
            optim_wrapper = dict(optimizer=dict(type='SGD', lr=BASE_LR, momentum=0.9))
        # The head is initialized in the constructor, so seed before it to
        # give every run the same starting weights.
        torch.manual_seed(0)
        model = ToyModel(pretrained_backbone)
        runner = Runner(
            model=model,
            work_dir=str(work_dir),
            experiment_name=f'toy_{uuid.uuid4().hex}',
            train_dataloader=dataloader_cfg(),
            val_dataloader=dataloader_cfg(),
            val_evaluator=Evaluator(ToySegmMetric(list(scores))),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
            val_cfg=dict(),
            optim_wrapper=optim_wrapper,
            # An explicit end, because the Runner otherwise ends the schedule
            # at max_epochs and a 2-epoch run would skip the second milestone.
            param_scheduler=dict(type='MultiStepLR', by_epoch=True, milestones=[1, 2],
                                 gamma=LR_GAMMA, end=10),
            default_hooks=dict(checkpoint=checkpoint_hook,
                               logger=dict(type='LoggerHook', interval=1)),
            custom_hooks=list(custom_hooks),
            default_scope='mmdet',
            randomness=dict(seed=0),
            resume=resume,
            load_from=load_from,
        )
        runner.log_collector = LogCollector()
        runner.logger.addHandler(runner.log_collector)
        return runner

    return build
