"""Training-loop parts: hooks, and the local checkpoint loader that importing
this package installs so that MMEngine checkpoints load on torch >= 2.6."""
from .checkpoint_loader import install_checkpoint_loader, load_from_local
from .hooks import EpochCheckpointHook, PredictionOverlayHook

__all__ = ['EpochCheckpointHook', 'PredictionOverlayHook', 'install_checkpoint_loader',
           'load_from_local']
