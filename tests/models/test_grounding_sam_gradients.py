"""Every trainable GroundingSAM parameter gets a gradient in every step.

DistributedDataParallel with ``find_unused_parameters=False`` (the configs'
setting) fails on the next step when a parameter with ``requires_grad=True``
received no gradient, so these checks cover batches with and without objects
for each choice of trainable parts.
"""
import pytest
import torch
from mmdet.registry import MODELS

import gsam_mm  # noqa: F401

from ..conftest import tiny_model_config
from .test_grounding_sam import IMAGE_SIZE, make_sample

TRAINABLE_PART_CHOICES = [
    dict(return_masks=True, finetune_sam=False, freeze_text_encoder=True),
    dict(return_masks=True, finetune_sam=True, freeze_text_encoder=True),
    dict(return_masks=False, finetune_sam=False, freeze_text_encoder=True),
    dict(return_masks=False, finetune_sam=True, freeze_text_encoder=True),
    dict(return_masks=True, finetune_sam=True, freeze_text_encoder=False),
]


def samples_with_objects():
    return [make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]], [0, 1]),
            make_sample((64, IMAGE_SIZE), [], [])]


def samples_without_objects():
    return [make_sample((IMAGE_SIZE, 96), [], []), make_sample((64, IMAGE_SIZE), [], [])]


def parameters_without_gradient(model, samples) -> list[str]:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    losses = model.loss(torch.randn(len(samples), 3, IMAGE_SIZE, IMAGE_SIZE), samples)
    sum(losses.values()).backward()
    return [name for name, parameter in model.named_parameters()
            if parameter.requires_grad and parameter.grad is None]


@pytest.mark.parametrize('trainable_parts', TRAINABLE_PART_CHOICES,
                         ids=lambda parts: '-'.join(f'{k}={v}' for k, v in parts.items()))
def test_every_trainable_parameter_gets_gradient(trainable_parts):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, **trainable_parts))

    assert parameters_without_gradient(model, samples_with_objects()) == []
    assert parameters_without_gradient(model, samples_without_objects()) == []


def test_text_projection_trains_with_frozen_encoder():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, freeze_text_encoder=True))

    parameters_without_gradient(model, samples_with_objects())

    assert model.dino.feat_map.weight.grad is not None
    assert model.dino.feat_map.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.dino.bert.parameters())


def test_image_encoder_frozen_without_mask_losses():
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, finetune_sam=True, return_masks=False))

    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())
