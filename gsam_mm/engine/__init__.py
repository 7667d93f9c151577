"""Training-loop parts: hooks, the optimizer wrapper constructor, and the
local checkpoint loader that importing this package installs so that
MMEngine checkpoints load on torch >= 2.6."""
from .checkpoint_loader import install_checkpoint_loader, load_from_local
from .hooks import EpochCheckpointHook, PredictionOverlayHook
from .optim_constructor import TrainableOnlyOptimWrapperConstructor

__all__ = ['EpochCheckpointHook', 'PredictionOverlayHook', 'TrainableOnlyOptimWrapperConstructor',
           'install_checkpoint_loader', 'load_from_local']
