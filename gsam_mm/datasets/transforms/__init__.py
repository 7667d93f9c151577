"""Data pipeline transforms; importing this package registers them with mmdet."""
from .loading import LoadGroundingAnnotations, LoadImageRGB

__all__ = ['LoadImageRGB', 'LoadGroundingAnnotations']
