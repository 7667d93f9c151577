"""Runner hooks, registered in the mmdet and MMEngine HOOKS registries on import."""
from .epoch_checkpoint_hook import EpochCheckpointHook

__all__ = ['EpochCheckpointHook']
