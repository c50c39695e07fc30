"""Typed exceptions. Every message names the file, the row or feature, what is wrong and the fix.

Imports nothing of the package; every part of it may import this.
"""


class NuclickError(Exception):
    """Base class of the package's errors (the CLI prints these without a traceback)."""


class AnnotationError(NuclickError):
    """An annotation file cannot be read or holds an invalid mark."""


class SlideError(NuclickError):
    """A slide or image cannot be opened or read."""


class ModelError(NuclickError):
    """A model cannot be found, loaded or does not fit the request."""


class DatasetError(NuclickError):
    """A training dataset is malformed."""


class ConfigError(NuclickError):
    """A configuration value or sample sheet is invalid."""


class OutputError(NuclickError):
    """An output path cannot be written, or would overwrite an input."""
