"""Parts of a tiny MMEngine Runner for hook and checkpoint tests.

The toy model has a frozen backbone loaded from a pretrained file by
``init_weights`` (as mmdet models with a `Pretrained` init_cfg load theirs) and a
trainable head. Eight samples in batches of 2 make 4 iterations per epoch.
"""
import logging
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, BaseModule
from torch import nn
from torch.utils.data import Dataset

INPUT_CHANNELS = 64
HIDDEN_CHANNELS = 256
SAMPLE_COUNT = 8
BATCH_SIZE = 2
ITERS_PER_EPOCH = SAMPLE_COUNT // BATCH_SIZE
BASE_LR = 0.01
LR_GAMMA = 0.5


class ToyDataset(Dataset):
    """Fixed random regression samples. The metainfo contains a numpy array, as
    real dataset palettes can, which the checkpoint loader has to accept."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(SAMPLE_COUNT, INPUT_CHANNELS, generator=generator)
        self.targets = torch.randn(SAMPLE_COUNT, generator=generator)

    @property
    def metainfo(self) -> dict:
        return dict(classes=('thing',), palette=np.array([[220, 20, 60]], dtype=np.uint8))

    def __len__(self) -> int:
        return SAMPLE_COUNT

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.inputs[index], targets=self.targets[index])


class FrozenBackbone(BaseModule):
    """Linear + BatchNorm whose weights come from a pretrained file."""

    def __init__(self, pretrained: str) -> None:
        super().__init__(init_cfg=dict(type='Pretrained', checkpoint=pretrained))
        self.linear = nn.Linear(INPUT_CHANNELS, HIDDEN_CHANNELS)
        self.norm = nn.BatchNorm1d(HIDDEN_CHANNELS)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(inputs)).relu()


class ToyModel(BaseModel):
    """Frozen pretrained backbone plus a trainable linear head."""

    def __init__(self, pretrained: str) -> None:
        super().__init__()
        self.backbone = FrozenBackbone(pretrained)
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(HIDDEN_CHANNELS, 1)

    def forward(self, inputs: torch.Tensor, targets: Optional[torch.Tensor] = None,
                mode: str = 'tensor'):
        predictions = self.head(self.backbone(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=F.mse_loss(predictions.float(), targets))
        if mode == 'predict':
            return list(predictions)
        return predictions


class ToySegmMetric(BaseMetric):
    """Reports `coco/segm_mAP` from a fixed list, one value per evaluation."""

    default_prefix = 'coco'

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.evaluation_count = 0

    def process(self, data_batch, data_samples) -> None:
        self.results.append(len(data_samples))

    def compute_metrics(self, results: list) -> dict:
        score = self.scores[min(self.evaluation_count, len(self.scores) - 1)]
        self.evaluation_count += 1
        return {'segm_mAP': score}


class InterruptHook(Hook):
    """Raise after the given epoch, once the checkpoint hook (priority VERY_LOW) has saved."""

    priority = 'LOWEST'

    def __init__(self, after_epoch: int) -> None:
        self.after_epoch = after_epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 == self.after_epoch:
            raise RuntimeError(f'simulated crash after epoch {self.after_epoch}')


class LogCollector(logging.Handler):
    """Collects the messages of a logger."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def contains(self, text: str) -> bool:
        return any(text in message for message in self.messages)


def dataloader_cfg() -> dict:
    return dict(dataset=ToyDataset(), batch_size=BATCH_SIZE, num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=dict(type='default_collate'))
