"""Log the SAM embedding cache's counts after every epoch."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import Runner

from .epoch_checkpoint_hook import unwrap_model


@HOOKS.register_module()
class EmbeddingCacheLogHook(Hook):
    """Log hits, computed embeddings, checksum mismatches and storage of the
    model's SAM embedding cache after each training, validation and test
    epoch. The counts run from the start of the process. Models without a
    cache (`embedding_cache` None or missing) log nothing.
    """

    priority = 'LOW'

    def after_train_epoch(self, runner: Runner) -> None:
        self._log(runner, f'after training epoch {runner.epoch + 1}')

    def after_val_epoch(self, runner: Runner, metrics=None) -> None:
        self._log(runner, 'after validation')

    def after_test_epoch(self, runner: Runner, metrics=None) -> None:
        self._log(runner, 'after testing')

    @staticmethod
    def _log(runner: Runner, moment: str) -> None:
        model = unwrap_model(runner.model)
        cache = getattr(model, 'embedding_cache', None)
        if cache is not None:
            runner.logger.info(f'{cache.summary()} ({moment})')
