"""Losses registered in mmdet's MODELS registry on import."""
from .bce_dice_loss import BCEDiceLoss

__all__ = ['BCEDiceLoss']
