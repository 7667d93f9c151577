"""BCEDiceLoss against values worked out by hand.

Case A, one 2x2 mask: logits [[0, ln 3], [-ln 3, 0]] give probabilities
[[1/2, 3/4], [1/4, 1/2]] against the target [[1, 1], [0, 0]].
  BCE per pixel: ln 2, ln(4/3), ln(4/3), ln 2, so the mean is ln(8/3) / 2.
  Dice (eps = 1): intersection 1/2 + 3/4 = 5/4, sum p = 2, sum t = 2,
  so 1 - (2 * 5/4 + 1) / (2 + 2 + 1) = 1 - 3.5 / 5 = 0.3.

Case B, an all-zero 2x2 target with logits 0 (p = 1/2 everywhere):
  BCE = ln 2; Dice (eps = 1) = 1 - (0 + 1) / (2 + 0 + 1) = 2/3.
"""
import math

import pytest
import torch
from mmdet.registry import MODELS

from gsam_mm.errors import ConfigError
from gsam_mm.models.losses import BCEDiceLoss

LN3 = math.log(3)
CASE_A_BCE = math.log(8 / 3) / 2
CASE_A_DICE = 0.3
CASE_A_LOSS = CASE_A_BCE + CASE_A_DICE
CASE_B_LOSS = math.log(2) + 2 / 3


def case_a() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[0.0, LN3], [-LN3, 0.0]]], requires_grad=True)
    targets = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    return logits, targets


def case_b() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(1, 2, 2, requires_grad=True), torch.zeros(1, 2, 2)


def both_cases() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.cat([case_a()[0], case_b()[0]]).detach().requires_grad_()
    targets = torch.cat([case_a()[1], case_b()[1]])
    return logits, targets


def test_one_mask_by_hand():
    logits, targets = case_a()
    loss = BCEDiceLoss()(logits, targets)
    assert loss.item() == pytest.approx(CASE_A_LOSS, abs=1e-6)


def test_term_and_loss_weights():
    logits, targets = case_a()
    loss = BCEDiceLoss(bce_weight=2.0, dice_weight=0.5, loss_weight=3.0)(logits, targets)
    assert loss.item() == pytest.approx(3 * (2 * CASE_A_BCE + 0.5 * CASE_A_DICE), abs=1e-6)


def test_bce_only_and_dice_only():
    logits, targets = case_a()
    bce_only = BCEDiceLoss(dice_weight=0)(logits, targets)
    dice_only = BCEDiceLoss(bce_weight=0)(logits, targets)
    assert bce_only.item() == pytest.approx(CASE_A_BCE, abs=1e-6)
    assert dice_only.item() == pytest.approx(CASE_A_DICE, abs=1e-6)


def test_all_zero_target_uses_eps():
    logits, targets = case_b()
    assert BCEDiceLoss()(logits, targets).item() == pytest.approx(CASE_B_LOSS, abs=1e-6)

    # With a tiny eps the Dice term of an empty target is the full 1.
    dice = BCEDiceLoss(bce_weight=0, eps=1e-6)(logits, targets).item()
    assert dice == pytest.approx(1 - 1e-6 / (2 + 1e-6), abs=1e-7)


def test_all_zero_target_and_prediction_near_zero():
    logits = torch.full((1, 2, 2), -20.0)
    loss = BCEDiceLoss()(logits, torch.zeros(1, 2, 2))
    # BCE = softplus(-20) ~ 2e-9 and Dice = 1 - 1 / (4 * sigmoid(-20) + 1) ~ 8e-9.
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_empty_input_keeps_graph(reduction):
    logits = torch.zeros(0, 4, 4, requires_grad=True)
    loss = BCEDiceLoss(reduction=reduction)(logits, torch.zeros(0, 4, 4))

    expected_shape = (0,) if reduction == 'none' else ()
    assert loss.shape == expected_shape
    assert loss.sum().item() == 0.0
    assert loss.grad_fn is not None
    loss.sum().backward()
    assert logits.grad.shape == (0, 4, 4)


def test_empty_input_with_avg_factor():
    logits = torch.zeros(0, 4, 4, requires_grad=True)
    loss = BCEDiceLoss()(logits, torch.zeros(0, 4, 4), avg_factor=0)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None


@pytest.mark.parametrize('valid_shape', ['per_instance', 'shared'])
def test_padding_does_not_change_loss(valid_shape):
    logits_a, targets_a = case_a()
    # A padding column with values that would change both terms if counted.
    logits = torch.cat([logits_a.detach(), torch.tensor([[[5.0], [-7.0]]])], dim=2)
    logits.requires_grad_()
    targets = torch.cat([targets_a, torch.ones(1, 2, 1)], dim=2)
    valid = torch.tensor([[True, True, False], [True, True, False]])
    if valid_shape == 'per_instance':
        valid = valid[None]

    loss = BCEDiceLoss()(logits, targets, valid_mask=valid)
    assert loss.item() == pytest.approx(CASE_A_LOSS, abs=1e-6)

    loss.backward()
    assert torch.equal(logits.grad[0, :, 2], torch.zeros(2))


def test_padding_logits_never_matter():
    logits_a, targets_a = case_a()
    valid = torch.tensor([[True, True, False], [True, True, False]])
    losses = []
    for padding_logit in (-1e4, 0.0, 1e4, float('inf')):
        logits = torch.cat([logits_a.detach(), torch.full((1, 2, 1), padding_logit)], dim=2)
        targets = torch.cat([targets_a, torch.ones(1, 2, 1)], dim=2)
        losses.append(BCEDiceLoss()(logits, targets, valid_mask=valid).item())
    assert losses == [losses[0]] * len(losses)


def test_instance_without_valid_pixels_is_zero():
    logits, targets = both_cases()
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[1] = False
    losses = BCEDiceLoss(reduction='none')(logits, targets, valid_mask=valid)
    assert losses[0].item() == pytest.approx(CASE_A_LOSS, abs=1e-6)
    assert losses[1].item() == 0.0


def test_reductions():
    logits, targets = both_cases()
    loss = BCEDiceLoss(reduction='none')

    torch.testing.assert_close(loss(logits, targets), torch.tensor([CASE_A_LOSS, CASE_B_LOSS]))
    total = CASE_A_LOSS + CASE_B_LOSS
    assert loss(logits, targets, reduction_override='sum').item() == pytest.approx(total, abs=1e-6)
    mean = loss(logits, targets, reduction_override='mean')
    assert mean.item() == pytest.approx(total / 2, abs=1e-6)
    assert BCEDiceLoss(reduction='sum')(logits, targets).item() == pytest.approx(total, abs=1e-6)


def test_avg_factor_and_instance_weight():
    logits, targets = both_cases()
    loss = BCEDiceLoss()

    total = CASE_A_LOSS + CASE_B_LOSS
    assert loss(logits, targets, avg_factor=4).item() == pytest.approx(total / 4, abs=1e-6)
    weighted = loss(logits, targets, weight=torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx(CASE_A_LOSS / 2, abs=1e-6)
    with pytest.raises(ValueError, match='avg_factor'):
        loss(logits, targets, avg_factor=4, reduction_override='sum')


def test_boolean_targets_match_float_targets():
    logits, targets = case_a()
    loss = BCEDiceLoss()
    assert loss(logits, targets.bool()).item() == loss(logits, targets).item()


def test_half_precision_logits_do_not_overflow():
    # 300 x 300 = 90000 pixels: sum(p) alone exceeds the float16 maximum 65504.
    logits = torch.full((1, 300, 300), 4.0, dtype=torch.float16)
    loss = BCEDiceLoss()(logits, torch.ones(1, 300, 300))

    probability = 1 / (1 + math.exp(-4.0))
    pixel_count = 300 * 300
    bce = -math.log(probability)
    dice = 1 - (2 * pixel_count * probability + 1) / (pixel_count * probability + pixel_count + 1)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(bce + dice, rel=1e-4)


def test_built_from_registry():
    loss = MODELS.build(dict(type='BCEDiceLoss', dice_weight=2.0, reduction='sum'))
    assert isinstance(loss, BCEDiceLoss)
    assert loss.dice_weight == 2.0
    assert loss.reduction == 'sum'


@pytest.mark.parametrize('kwargs, expected_fragments', [
    (dict(reduction='avg'), ['reduction', "'mean', 'sum', 'none'", "got 'avg'"]),
    (dict(bce_weight=-1.0), ['bce_weight', '>= 0', 'got -1.0']),
    (dict(dice_weight='1'), ['dice_weight', '>= 0', "got '1'"]),
    (dict(loss_weight=-2), ['loss_weight', '>= 0', 'got -2']),
    (dict(eps=0), ['eps', '> 0', 'got 0']),
    (dict(bce_weight=0, dice_weight=0), ['bce_weight and dice_weight are both 0']),
])
def test_invalid_arguments(kwargs, expected_fragments):
    with pytest.raises(ConfigError) as error:
        BCEDiceLoss(**kwargs)
    for fragment in expected_fragments:
        assert fragment in str(error.value)


def test_invalid_reduction_override():
    logits, targets = case_a()
    with pytest.raises(ConfigError, match="reduction_override must be one of"):
        BCEDiceLoss()(logits, targets, reduction_override='max')


@pytest.mark.parametrize('target_shape, valid_shape, expected', [
    ((1, 2, 3), None, 'gt_masks shape'),
    ((1, 2, 2), (2, 2, 2), 'valid_mask shape'),
    ((1, 2, 2), (3, 3), 'valid_mask shape'),
])
def test_shape_mismatch(target_shape, valid_shape, expected):
    logits, _ = case_a()
    valid = None if valid_shape is None else torch.ones(valid_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=expected):
        BCEDiceLoss()(logits, torch.zeros(target_shape), valid_mask=valid)
