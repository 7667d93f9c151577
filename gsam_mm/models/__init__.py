"""The GroundingSAM detector, the networks it wraps and its losses."""
from .grounding_sam import GroundingSAM
from .losses import *  # noqa: F401,F403  (registers the losses)

__all__ = ['GroundingSAM']
