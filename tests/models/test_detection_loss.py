"""Hungarian matching and detection losses on a case small enough to check by hand."""
import math

import torch
from mmengine.structures import InstanceData

import gsam_mm  # noqa: F401
from gsam_mm.models.detection_loss import GroundingDetectionLoss, default_detection_loss
from gsam_mm.models.grounding_dino import GroundingDinoOutputs

MAX_TEXT_LEN = 8
IMG_META = dict(img_shape=(100, 200))


def make_loss() -> GroundingDetectionLoss:
    return GroundingDetectionLoss(**default_detection_loss(MAX_TEXT_LEN))


def ground_truth() -> InstanceData:
    positive_maps = torch.zeros(2, MAX_TEXT_LEN, dtype=torch.bool)
    positive_maps[0, 1] = True
    positive_maps[1, 2] = True
    return InstanceData(bboxes=torch.tensor([[20., 10., 60., 50.], [100., 40., 180., 90.]]),
                        labels=torch.tensor([0, 1]), positive_maps=positive_maps)


def predictions() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three queries: query 0 sits exactly on instance 1, query 2 on
    instance 0, and query 1 far from both. Every real-token logit is 0."""
    # cxcywh relative to the 200x100 image.
    boxes = torch.tensor([[[140 / 200, 65 / 100, 80 / 200, 50 / 100],
                           [0.05, 0.95, 0.02, 0.02],
                           [40 / 200, 30 / 100, 40 / 200, 40 / 100]]])
    logits = torch.full((1, 3, MAX_TEXT_LEN), float('-inf'))
    logits[..., :4] = 0.0
    token_mask = torch.zeros(1, 4, dtype=torch.bool)
    token_mask[0, :4] = True
    return logits, boxes, token_mask


def test_match_pairs_queries_with_their_boxes():
    logits, boxes, token_mask = predictions()
    padded_mask = make_loss()._pad_token_mask(token_mask)

    query_indices, gt_indices = make_loss().match(logits[0], boxes[0], padded_mask[0],
                                                  ground_truth(), IMG_META)

    pairs = sorted(zip(query_indices.tolist(), gt_indices.tolist()))
    assert pairs == [(0, 1), (2, 0)]


def test_losses_match_hand_computation():
    logits, boxes, token_mask = predictions()
    outputs = GroundingDinoOutputs(layer_logits=logits[None], layer_boxes=boxes[None],
                                   encoder_logits=None, encoder_boxes=None,
                                   text_token_mask=token_mask)

    losses = make_loss()(outputs, [ground_truth()], [IMG_META])

    # Sigmoid focal loss at p = 0.5 (alpha 0.25, gamma 2) on 3 queries x 4 real
    # tokens: 2 positive entries and 10 negative ones, divided by 2 matches.
    positive = 0.25 * 0.5 ** 2 * math.log(2)
    negative = 0.75 * 0.5 ** 2 * math.log(2)
    assert math.isclose(losses['loss_cls'].item(), (2 * positive + 10 * negative) / 2,
                        rel_tol=1e-5)
    # Matched boxes are exact, so both box losses vanish.
    assert losses['loss_bbox'].item() < 1e-6
    assert losses['loss_iou'].item() < 1e-6
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_iou'}


def test_image_without_objects_gives_only_negatives():
    logits, boxes, token_mask = predictions()
    outputs = GroundingDinoOutputs(layer_logits=logits[None], layer_boxes=boxes[None],
                                   encoder_logits=logits, encoder_boxes=boxes,
                                   text_token_mask=token_mask)
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long),
                         positive_maps=torch.zeros(0, MAX_TEXT_LEN, dtype=torch.bool))

    losses = make_loss()(outputs, [empty], [IMG_META])

    negative = 0.75 * 0.5 ** 2 * math.log(2)
    # No match: the average factor is clamped to 1.
    assert math.isclose(losses['loss_cls'].item(), 12 * negative, rel_tol=1e-5)
    assert losses['loss_bbox'].item() == 0
    assert losses['enc.loss_cls'].item() == losses['loss_cls'].item()
