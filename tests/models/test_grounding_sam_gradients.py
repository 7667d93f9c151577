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

# The default, SAM's encoder training, the encoder frozen for lack of a mask
# loss, and the text encoder training.
TRAINABLE_PART_CHOICES = [
    dict(return_masks=True, finetune_sam=False, freeze_text_encoder=True),
    dict(return_masks=True, finetune_sam=True, freeze_text_encoder=True),
    dict(return_masks=False, finetune_sam=True, freeze_text_encoder=True),
    dict(return_masks=True, finetune_sam=True, freeze_text_encoder=False),
]


def parameters_without_gradient(model, sample) -> list[str]:
    """Run the loss on one image and return the trainable parameters left without gradient."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(2)
    losses = model.loss(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), [sample])
    sum(losses.values()).backward()
    return [name for name, parameter in model.named_parameters()
            if parameter.requires_grad and parameter.grad is None]


@pytest.mark.parametrize('trainable_parts', TRAINABLE_PART_CHOICES,
                         ids=lambda parts: '-'.join(f'{k}={v}' for k, v in parts.items()))
def test_every_trainable_parameter_gets_gradient(trainable_parts):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, **trainable_parts))
    model.train()
    with_objects = make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]], [0, 1])
    without_objects = make_sample((64, IMAGE_SIZE), [], [])

    assert parameters_without_gradient(model, with_objects) == []
    # The text projection after the frozen BERT trains too.
    assert model.dino.feat_map.weight.grad.abs().sum() > 0
    assert parameters_without_gradient(model, without_objects) == []


def test_image_encoder_frozen_without_mask_losses():
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, finetune_sam=True, return_masks=False))

    assert not any(p.requires_grad for p in model.sam.image_encoder.parameters())
