"""Check, before the first step, that the dataset's categories form a valid prompt."""
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from ...fields import CATEGORY_TEXTS


@HOOKS.register_module()
class PromptCheckHook(Hook):
    """Build the training prompt before training starts.

    The model receives the category names only with the first batch.
    This hook builds the caption and positive map from the training
    dataset's metainfo in `before_train` instead. A caption over the text
    encoder's token limit, duplicate names, or a `num_classes` that disagrees
    with the dataset then stop the run before step 0 with the model's error.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner: Runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        texts = runner.train_dataloader.dataset.metainfo.get(CATEGORY_TEXTS)
        if texts is None or not hasattr(model, 'prompt_for'):
            return
        caption, positive_map = model.prompt_for(tuple(texts), torch.device('cpu'))
        runner.logger.info(f'Prompt checked before training: {len(texts)} categories, '
                           f'{int(positive_map.any(0).sum())} category tokens')
