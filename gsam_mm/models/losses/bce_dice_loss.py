"""Binary cross-entropy plus Dice loss for instance mask logits.

Shape letters: N instances, H x W mask pixels.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

from gsam_mm.errors import ConfigError

REDUCTIONS = ('mean', 'sum', 'none')


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_non_negative(name: str, value: float) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigError(f'BCEDiceLoss: {name} must be a number >= 0, got {value!r}.')


def _check_reduction(name: str, value: str) -> None:
    if value not in REDUCTIONS:
        allowed = ', '.join(repr(option) for option in REDUCTIONS)
        raise ConfigError(f'BCEDiceLoss: {name} must be one of {allowed}, got {value!r}.')


@MODELS.register_module()
class BCEDiceLoss(nn.Module):
    """Weighted sum of pixel-wise binary cross-entropy and soft Dice loss per mask.

    For instance ``i`` with valid pixels ``V_i`` (all H x W pixels unless
    ``valid_mask`` is given), probabilities ``p = sigmoid(logits)`` and
    targets ``t``::

        bce_i  = mean over V_i of BCE(logit, t)
        dice_i = 1 - (2 * sum_V_i(p * t) + eps) / (sum_V_i(p) + sum_V_i(t) + eps)
        loss_i = bce_weight * bce_i + dice_weight * dice_i

    The N instance losses are then reduced and multiplied by ``loss_weight``.
    Pixels outside ``valid_mask`` (padding) enter neither the BCE mean nor the
    Dice sums, and an instance without valid pixels has ``loss_i = 0``.

    Args:
        bce_weight: Weight of the binary cross-entropy term, >= 0.
        dice_weight: Weight of the Dice term, >= 0. At least one of the two
            weights must be positive.
        reduction: How the N instance losses are combined. ``'mean'``
            averages them (or divides their sum by ``avg_factor``),
            ``'sum'`` adds them and ``'none'`` returns them as an (N,) tensor.
        eps: Smoothing term added to the numerator and denominator of the
            Dice ratio, > 0. With the default 1.0, an all-zero target mask
            costs ``1 - 1 / (sum(p) + 1)``, so a confident empty prediction
            costs almost nothing instead of the full Dice loss of 1.
        loss_weight: Factor applied to the reduced loss, >= 0.

    Raises:
        ConfigError: when an argument is outside the values listed above.
    """

    def __init__(self,
                 *,
                 bce_weight: float = 1.0,
                 dice_weight: float = 1.0,
                 reduction: str = 'mean',
                 eps: float = 1.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        _check_non_negative('bce_weight', bce_weight)
        _check_non_negative('dice_weight', dice_weight)
        if bce_weight == 0 and dice_weight == 0:
            raise ConfigError('BCEDiceLoss: bce_weight and dice_weight are both 0, '
                              'so the loss would always be 0; set at least one to a '
                              'positive value.')
        _check_reduction('reduction', reduction)
        if not _is_number(eps) or eps <= 0:
            raise ConfigError('BCEDiceLoss: eps must be a number > 0 (it keeps the Dice '
                              f'ratio defined for empty masks), got {eps!r}.')
        _check_non_negative('loss_weight', loss_weight)

        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.reduction = reduction
        self.eps = float(eps)
        self.loss_weight = float(loss_weight)

    def forward(self,
                mask_logits: Tensor,
                gt_masks: Tensor,
                valid_mask: Optional[Tensor] = None,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss of N predicted masks against their targets.

        Args:
            mask_logits: NxHxW mask logits (before sigmoid).
            gt_masks: NxHxW target masks with values in {0, 1} (bool, integer
                or float; soft targets in [0, 1] also work).
            valid_mask: NxHxW or HxW mask of the pixels that count, for example
                False on the padding added to batch images of different sizes.
                None counts every pixel.
            weight: Optional (N,) weight of each instance loss.
            avg_factor: Divisor of the summed instance losses for
                ``'mean'`` reduction, for example the number of masks on all
                GPUs. Not allowed with ``'sum'``; ignored with ``'none'``.
            reduction_override: Replaces ``reduction`` for this call.

        Returns:
            A scalar, or an (N,) tensor for ``'none'``. With N = 0 the result
            is a zero that stays in the autograd graph of ``mask_logits``, so
            DDP and AMP see the mask branch take part in every step.
        """
        reduction = self.reduction
        if reduction_override is not None:
            _check_reduction('reduction_override', reduction_override)
            reduction = reduction_override
        valid = self._expand_valid_mask(mask_logits, gt_masks, valid_mask)

        # Half-precision sums over H * W pixels overflow above 65504.
        logits = mask_logits.to(torch.promote_types(mask_logits.dtype, torch.float32))
        targets = gt_masks.to(logits.dtype)

        bce = self._bce_per_instance(logits, targets, valid)
        dice = self._dice_per_instance(logits, targets, valid)
        instance_losses = self.bce_weight * bce + self.dice_weight * dice
        if weight is not None:
            instance_losses = instance_losses * weight

        return self.loss_weight * self._reduce(instance_losses, reduction, avg_factor)

    @staticmethod
    def _expand_valid_mask(mask_logits: Tensor, gt_masks: Tensor,
                           valid_mask: Optional[Tensor]) -> Optional[Tensor]:
        """Check the input shapes and return ``valid_mask`` as an NxHxW bool tensor."""
        if mask_logits.dim() != 3:
            raise ValueError('BCEDiceLoss expects mask_logits of shape (N, H, W), '
                             f'got {tuple(mask_logits.shape)}.')
        if gt_masks.shape != mask_logits.shape:
            raise ValueError(f'BCEDiceLoss: gt_masks shape {tuple(gt_masks.shape)} '
                             f'differs from mask_logits shape {tuple(mask_logits.shape)}.')
        if valid_mask is None:
            return None

        mask_size = mask_logits.shape[-2:]
        if valid_mask.shape not in (mask_logits.shape, mask_size):
            raise ValueError(f'BCEDiceLoss: valid_mask shape {tuple(valid_mask.shape)} '
                             f'is neither (N, H, W) = {tuple(mask_logits.shape)} '
                             f'nor (H, W) = {tuple(mask_size)}.')
        return valid_mask.to(torch.bool).expand_as(mask_logits)

    @staticmethod
    def _bce_per_instance(logits: Tensor, targets: Tensor,
                          valid: Optional[Tensor]) -> Tensor:
        """Return the (N,) mean binary cross-entropy over each mask's valid pixels."""
        pixel_losses = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
        if valid is None:
            return pixel_losses.mean(dim=(1, 2))

        # torch.where, not a multiplication, so that padding never turns into NaN.
        pixel_losses = torch.where(valid, pixel_losses, torch.zeros_like(pixel_losses))
        valid_counts = valid.sum(dim=(1, 2)).clamp(min=1)
        return pixel_losses.sum(dim=(1, 2)) / valid_counts

    def _dice_per_instance(self, logits: Tensor, targets: Tensor,
                           valid: Optional[Tensor]) -> Tensor:
        """Return the (N,) Dice loss of each mask over its valid pixels."""
        probabilities = logits.sigmoid()
        if valid is not None:
            probabilities = torch.where(valid, probabilities, torch.zeros_like(probabilities))
            targets = torch.where(valid, targets, torch.zeros_like(targets))

        intersection = (probabilities * targets).sum(dim=(1, 2))
        total = probabilities.sum(dim=(1, 2)) + targets.sum(dim=(1, 2))
        return 1 - (2 * intersection + self.eps) / (total + self.eps)

    @staticmethod
    def _reduce(instance_losses: Tensor, reduction: str,
                avg_factor: Optional[float]) -> Tensor:
        """Reduce the (N,) instance losses as ``reduction`` and ``avg_factor`` ask."""
        if reduction == 'none':
            return instance_losses
        if reduction == 'sum':
            if avg_factor is not None:
                raise ValueError("BCEDiceLoss: avg_factor cannot be used with reduction='sum'.")
            return instance_losses.sum()

        if avg_factor is not None:
            # Same guard as mmdet's weight_reduce_loss for avg_factor = 0.
            return instance_losses.sum() / (avg_factor + torch.finfo(torch.float32).eps)
        if instance_losses.numel() == 0:
            # The sum of an empty tensor is 0 and, unlike mean(), not NaN.
            return instance_losses.sum()
        return instance_losses.mean()
