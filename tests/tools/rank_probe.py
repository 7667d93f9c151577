"""A hook that records, per rank, what the two-process training test checks.

Each rank appends JSON lines to ``OUT_DIR/rank{RANK}.jsonl``. They record the
trainable parameters' SHA-256 before training and after every iteration, and
how many parameter tensors DistributedDataParallel syncs. They also record the
dataset indices the sampler gives the rank in each epoch, and the image ids
of each batch.
"""
import hashlib
import json
import os.path as osp
from typing import Optional, Sequence

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn


def trainable_parameters_digest(model: nn.Module) -> str:
    """Return the SHA-256 of the trainable parameters' bytes, in name order."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.named_parameters()):
        if parameter.requires_grad:
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class RankProbeHook(Hook):
    """Write one JSON line per event to ``out_dir/rank{RANK}.jsonl``."""

    priority = 'LOWEST'

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def _write(self, record: dict) -> None:
        with open(osp.join(self.out_dir, f'rank{get_rank()}.jsonl'), 'a',
                  encoding='utf-8') as file:
            file.write(json.dumps(record) + '\n')

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = dict(event='before_train', epoch=runner.epoch, iter=runner.iter,
                      digest=trainable_parameters_digest(model),
                      trainable_tensors=len([p for p in model.parameters() if p.requires_grad]),
                      frozen_tensors=len([p for p in model.parameters() if not p.requires_grad]))
        if isinstance(runner.model, torch.nn.parallel.DistributedDataParallel):
            logging_data = runner.model._get_ddp_logging_data()
            record.update(ddp_tensors=logging_data.get('num_parameter_tensors'),
                          find_unused_parameters=runner.model.find_unused_parameters)
        self._write(record)

    def before_train_epoch(self, runner) -> None:
        # DistSamplerSeedHook (priority NORMAL) has set this epoch's shuffle seed.
        self._write(dict(event='epoch', epoch=runner.epoch,
                         sampler_indices=list(runner.train_dataloader.sampler)))

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[Sequence] = None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        samples = data_batch['data_samples']
        self._write(dict(event='iter', epoch=runner.epoch, iter=runner.iter,
                         img_ids=[sample.img_id for sample in samples],
                         instances=[len(sample.gt_instances) for sample in samples],
                         digest=trainable_parameters_digest(model)))
