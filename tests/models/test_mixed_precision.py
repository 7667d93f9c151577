"""GroundingSAM under bfloat16 autocast, as AmpOptimWrapper runs it on recent GPUs.

CUDA autocast cannot run here, so CPU autocast replaces it. It casts a
different set of ops to low precision than CUDA autocast does, so a pass here
does not prove the CUDA run, but it catches dtype mismatches between the
parts. One image keeps the test short, because CPU bfloat16 matmuls are slow.
"""
import torch
from mmdet.registry import MODELS

import gsam_mm  # noqa: F401

from ..conftest import tiny_model_config
from .test_grounding_sam import IMAGE_SIZE, make_sample


def test_loss_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, finetune_sam=True, return_masks=True))
    model.train()
    samples = [make_sample((IMAGE_SIZE, 96), [[10, 10, 60, 50], [30, 40, 90, 120]], [0, 1])]

    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE), samples)
    sum(losses.values()).backward()

    for name, value in losses.items():
        assert value.dtype == torch.float32, name
        assert torch.isfinite(value), name
    assert model.sam.image_encoder.patch_embed.proj.weight.grad is not None
    assert model.sam.mask_decoder.iou_prediction_head.layers[0].weight.grad is not None
    assert model.dino.backbone[0].patch_embed.proj.weight.grad.dtype == torch.float32
