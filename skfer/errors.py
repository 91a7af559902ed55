"""The exception skfer's loaders raise for a file they cannot use."""

from __future__ import annotations

__all__ = ["DataFileError"]


class DataFileError(ValueError):
    """A data, model or image file that is malformed, truncated or of another format.

    Raised by :func:`skfer.datasets.load_fer2013`, :func:`skfer.datasets.load_ferplus`,
    :func:`skfer.load` and
    :func:`skfer.faces.load_image`; the message names the file, the problem and the fix.
    A ``ValueError``, so ``except ValueError`` still catches it.
    """
