"""The optimizer wrapper constructor of the configs: MMEngine's default one,
minus a warning for every frozen parameter."""
from typing import Optional

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from torch import nn


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableOnlyOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Build the optimizer from the trainable parameters, as the default
    constructor does, and count the frozen ones in one log line.

    With `paramwise_cfg` set, MMEngine's default constructor leaves frozen
    parameters out with one warning each. GroundingSAM's frozen text encoder
    and SAM image encoder hold hundreds of them. This constructor leaves out
    every module whose parameters are all frozen and hands the other modules
    to the default logic.
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        self._frozen_tensors = 0
        optim_wrapper = super().__call__(model)
        if self._frozen_tensors:
            print_log(f'Optimizer: {self._frozen_tensors:,} frozen parameter tensors left out',
                      logger='current')
        return optim_wrapper

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = '',
                   is_dcn_module: Optional[int | float] = None) -> None:
        parameters = list(module.parameters())
        if parameters and not any(parameter.requires_grad for parameter in parameters):
            self._frozen_tensors += len(parameters)
            return
        super().add_params(params, module, prefix, is_dcn_module)
