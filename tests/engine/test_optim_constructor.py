"""TrainableOnlyOptimWrapperConstructor: the default constructor's parameter
groups without a warning per frozen parameter."""
from mmdet.registry import OPTIM_WRAPPERS
from mmengine.optim import build_optim_wrapper
from mmengine.optim.optimizer import default_constructor
from torch import nn

import gsam_mm.engine.optim_constructor as optim_constructor


class PartlyFrozen(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)).requires_grad_(False)
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


def optim_wrapper_config(constructor=None) -> dict:
    config = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=0.1),
                  paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1)}))
    if constructor:
        config['constructor'] = constructor
    return config


def record_logs(monkeypatch) -> list[str]:
    messages = []
    record = lambda message, **kwargs: messages.append(message)  # noqa: E731
    monkeypatch.setattr(default_constructor, 'print_log', record)
    monkeypatch.setattr(optim_constructor, 'print_log', record)
    return messages


def test_same_groups_as_default(monkeypatch):
    record_logs(monkeypatch)
    model = PartlyFrozen()
    ours = build_optim_wrapper(model, optim_wrapper_config('TrainableOnlyOptimWrapperConstructor'))
    default = build_optim_wrapper(model, optim_wrapper_config())

    def groups(wrapper):
        return [([id(p) for p in group['params']], group['lr'])
                for group in wrapper.optimizer.param_groups]

    assert groups(ours) == groups(default)
    assert {id(p) for group in ours.optimizer.param_groups for p in group['params']} == \
        {id(p) for p in model.parameters() if p.requires_grad}


def test_frozen_parameters_logged_once(monkeypatch):
    messages = record_logs(monkeypatch)
    build_optim_wrapper(PartlyFrozen(), optim_wrapper_config('TrainableOnlyOptimWrapperConstructor'))

    assert not [message for message in messages if 'is skipped' in message]
    assert messages[-1] == 'Optimizer: 4 frozen parameter tensors left out'


def test_default_warns_per_parameter(monkeypatch):
    """What the constructor is for: the default logs each frozen tensor."""
    messages = record_logs(monkeypatch)
    build_optim_wrapper(PartlyFrozen(), optim_wrapper_config())

    assert len([message for message in messages if 'is skipped' in message]) == 4


def test_wrapper_type_kept():
    wrapper = build_optim_wrapper(PartlyFrozen(),
                                  optim_wrapper_config('TrainableOnlyOptimWrapperConstructor'))
    assert isinstance(wrapper, OPTIM_WRAPPERS.get('OptimWrapper'))
