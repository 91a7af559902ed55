"""The exceptions skfer's loaders raise for a file they cannot use or fetch."""

from __future__ import annotations

__all__ = ["DataFileError", "WeightsError"]


class DataFileError(ValueError):
    """A data, model or image file that is malformed, truncated or of another format.

    Raised by :func:`skfer.datasets.load_fer2013`, :func:`skfer.ferplus.load_ferplus`,
    :func:`skfer.load` and
    :func:`skfer.faces.load_image`; the message names the file, the problem and the fix.
    A ``ValueError``, so ``except ValueError`` still catches it.
    """


class WeightsError(Exception):
    """A backbone's weights could not be had: the common base of
    :class:`~skfer.weights.WeightsDownloadError` (an ``OSError``: no internet, URL gone) and
    :class:`~skfer.weights.WeightsFileError` (a ``ValueError``: missing, corrupt or wrong file,
    hash mismatch).

    ``except WeightsError`` catches both, e.g. to skip one model whose weights fail and keep
    the others.
    """
