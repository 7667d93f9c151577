"""SAM's training prompts: ground-truth, matched predicted and mixed boxes."""
import pytest
import torch
from mmdet.registry import MODELS

import gsam_mm  # noqa: F401
from gsam_mm.errors import ConfigError
from gsam_mm.fields import LOSS_MASK, SAM_PROMPT_MODES
from gsam_mm.models import grounding_sam
from gsam_mm.models.sam_prompts import (MatchedBoxes, matched_boxes_per_image,
                                        select_box_prompts)

from ..conftest import tiny_model_config
from .test_grounding_sam import IMAGE_SIZE, batch

GT_BOXES = torch.tensor([[10., 10., 50., 50.], [60., 20., 100., 80.], [0., 0., 30., 30.]])
PREDICTED = torch.tensor([[12., 8., 52., 47.], [0., 0., 0., 0.], [2., 1., 28., 33.]])
MATCHED = torch.tensor([True, False, True])


def test_gt_mode_uses_ground_truth_boxes():
    prompts, instances = select_box_prompts('gt', GT_BOXES, None, 0.0, 20.0)

    assert torch.equal(prompts, GT_BOXES)
    assert instances.tolist() == [0, 1, 2]


def test_pred_mode_falls_back_when_unmatched():
    matched = MatchedBoxes(boxes=PREDICTED, matched=MATCHED)
    prompts, instances = select_box_prompts('pred', GT_BOXES, matched, 0.0, 20.0)

    assert torch.equal(prompts[0], PREDICTED[0])
    assert torch.equal(prompts[1], GT_BOXES[1])
    assert torch.equal(prompts[2], PREDICTED[2])
    assert instances.tolist() == [0, 1, 2]


def test_mixed_mode_adds_matched_boxes():
    matched = MatchedBoxes(boxes=PREDICTED, matched=MATCHED)
    prompts, instances = select_box_prompts('mixed', GT_BOXES, matched, 0.0, 20.0)

    assert prompts.shape == (5, 4)
    assert torch.equal(prompts[:3], GT_BOXES)
    assert torch.equal(prompts[3], PREDICTED[0])
    assert torch.equal(prompts[4], PREDICTED[2])
    assert instances.tolist() == [0, 1, 2, 0, 2]


def test_gt_mode_jitters_boxes():
    torch.manual_seed(0)
    prompts, _ = select_box_prompts('gt', GT_BOXES, None, 0.1, 20.0)

    assert not torch.equal(prompts, GT_BOXES)
    assert (prompts - GT_BOXES).abs().max() < 30


def test_matched_boxes_scaled_to_content():
    # Query 1 of image 0, a 200x100 content area, matched to instance 1 of 2.
    layer_boxes = torch.zeros(1, 3, 4, requires_grad=True)
    with torch.no_grad():
        layer_boxes[0, 1] = torch.tensor([0.5, 0.5, 0.2, 0.4])
    matches = [(torch.tensor([1]), torch.tensor([1]))]

    result = matched_boxes_per_image(layer_boxes, matches, [2], [(100, 200)])

    assert result[0].matched.tolist() == [False, True]
    assert result[0].boxes[1].tolist() == pytest.approx([80., 30., 120., 70.])
    assert not result[0].boxes.requires_grad


def test_unknown_mode_rejected():
    with pytest.raises(ConfigError, match="sam_prompts must be one of.*'both'"):
        MODELS.build(tiny_model_config(IMAGE_SIZE, sam_prompts='both'))


@pytest.mark.parametrize('mode', SAM_PROMPT_MODES)
def test_loss_in_each_prompt_mode(mode, monkeypatch):
    torch.manual_seed(0)
    model = MODELS.build(tiny_model_config(IMAGE_SIZE, sam_prompts=mode, box_jitter=0.0))
    recorded = []

    def record(*args, **kwargs):
        prompts, instances = select_box_prompts(*args, **kwargs)
        recorded.append((args[2], prompts, instances))
        return prompts, instances

    monkeypatch.setattr(grounding_sam, 'select_box_prompts', record)
    inputs, samples = batch()
    model.train()
    losses = model.loss(inputs, samples)

    # Only the first image has instances (two of them).
    assert len(recorded) == 1
    matched, prompts, instances = recorded[0]
    gt_boxes = samples[0].gt_instances.bboxes.tensor
    if mode == 'gt':
        assert matched is None
        assert torch.equal(prompts, gt_boxes)
    else:
        # 20 queries and two instances: the Hungarian assigner matches both.
        assert matched.matched.all()
        assert not matched.boxes.requires_grad
        predicted = matched.boxes
        if mode == 'pred':
            assert torch.equal(prompts, predicted)
            assert instances.tolist() == [0, 1]
        else:
            assert torch.equal(prompts, torch.cat([gt_boxes, predicted]))
            assert instances.tolist() == [0, 1, 0, 1]

    model.zero_grad()
    losses[LOSS_MASK].backward()
    assert torch.isfinite(losses[LOSS_MASK])
    assert model.sam.mask_decoder.output_upscaling[0].weight.grad is not None
    # Predicted prompts are detached, so the mask loss never reaches the detector.
    assert all(p.grad is None for p in model.dino.bbox_embed.parameters())
