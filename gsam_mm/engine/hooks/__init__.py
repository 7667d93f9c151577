"""Runner hooks, registered in the mmdet and MMEngine HOOKS registries on import."""
from .embedding_cache_log_hook import EmbeddingCacheLogHook
from .epoch_checkpoint_hook import EpochCheckpointHook
from .prediction_overlay_hook import PredictionOverlayHook
from .prompt_check_hook import PromptCheckHook

__all__ = ['EmbeddingCacheLogHook', 'EpochCheckpointHook', 'PredictionOverlayHook', 'PromptCheckHook']
