"""Exceptions raised for invalid user input: annotation files, configs and checkpoints."""


class GsamInputError(ValueError):
    """Base class of every error caused by the user's files or settings."""


class AnnotationError(GsamInputError):
    """One or more records of a COCO annotation file cannot be used.

    The message lists every problem found, each naming the annotation file,
    the image (id and file name) and the annotation id involved.
    """


class PromptError(GsamInputError):
    """The category names cannot form a valid text prompt."""


class ConfigError(GsamInputError):
    """A config value is invalid or contradicts the dataset."""


class InputError(GsamInputError):
    """An image given for inference (a file, folder, glob or array) cannot be used."""
