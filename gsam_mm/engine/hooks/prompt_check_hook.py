"""Check, before the first step, that the dataset's categories form a valid prompt."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ...fields import CATEGORY_TEXTS
from .epoch_checkpoint_hook import unwrap_model


@HOOKS.register_module()
class PromptCheckHook(Hook):
    """Build the training prompt before training starts.

    The model receives the category names only with the first batch.
    This hook builds the captions and positive maps from the training
    dataset's metainfo in `before_train` instead, so the caption split is
    logged and a category name over the text encoder's token limit,
    duplicate names, or a `num_classes` that disagrees with the dataset stop
    the run before step 0 with the model's error.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner: Runner) -> None:
        model = unwrap_model(runner.model)
        texts = runner.train_dataloader.dataset.metainfo.get(CATEGORY_TEXTS)
        if texts is None or not hasattr(model, 'prompt_for'):
            return
        chunks = model.prompt_for(tuple(texts))
        runner.logger.info(f'Prompt checked before training: {len(texts)} categories in '
                           f'{len(chunks)} caption(s)')
