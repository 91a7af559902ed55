"""Validation of image arrays: shapes, dtypes and value ranges, with errors that say the fix."""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.utils import check_array

__all__ = ["as_image_batch", "check_one_label_per_image", "warn_unlike_training"]

IMAGE_LAYOUTS = "(n, H*W) flat square rows, (n, H, W), (n, H, W, 1) or (n, H, W, 3)"


def as_image_batch(X, *, name: str = "X") -> np.ndarray:
    """Return ``X`` as an ``(n, H, W, C)`` batch of pixel intensities in 0..255.

    Integer and boolean input becomes ``uint8`` (values must lie in 0..255); float input stays
    (as float32) and must be finite. Flat rows must have a square length, as the FER2013 CSV
    gives them. Nothing is clipped, rounded or dropped: a value that does not fit is an error.
    The caller's array is never modified.

    Parameters
    ----------
    X : array-like
        Images in one of the layouts ``(n, H*W)``, ``(n, H, W)``, ``(n, H, W, 1)``,
        ``(n, H, W, 3)``.
    name : str
        Name used in error messages.

    Raises
    ------
    ValueError
        On a wrong number of dimensions or channels, non-square flat rows, an empty batch,
        NaN or infinite values, non-numeric data, or integers outside 0..255.
    TypeError
        On sparse matrices.
    """
    array = check_array(
        X,
        accept_sparse=False,
        dtype="numeric",
        allow_nd=True,
        ensure_all_finite=True,
        ensure_min_features=1,
        input_name=name,
    )
    if array.ndim == 2:
        side = math.isqrt(array.shape[1])
        if side * side != array.shape[1] or side == 0:
            raise ValueError(
                f"{name} has flat rows of {array.shape[1]} values, which is not a square "
                f"image; pass images as (n, H, W) or (n, H, W, C) arrays instead. "
                f"Received: shape={array.shape}"
            )
        array = array.reshape(array.shape[0], side, side, 1)
    elif array.ndim == 3:
        array = array[..., np.newaxis]
    elif array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be images in {IMAGE_LAYOUTS}. Received: shape={array.shape}")
    if min(array.shape[1:3]) == 0:
        raise ValueError(f"{name} holds images of size 0. Received: shape={array.shape}")
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype != np.uint8:
        low, high = array.min(), array.max()
        if low < 0 or high > 255:
            raise ValueError(
                f"{name} holds integers outside 0..255, the range of 8-bit pixels; rescale "
                f"them or pass floats. Received: min={low}, max={high}"
            )
        array = array.astype(np.uint8)
    return array


def check_one_label_per_image(images: np.ndarray, labels: np.ndarray, *, name: str = "X") -> None:
    """Raise ``ValueError`` unless there is exactly one label per image."""
    if len(images) != len(labels):
        raise ValueError(
            f"{name} holds {len(images)} images but y holds {len(labels)} labels; pass exactly "
            f"one label per image. Received: len({name})={len(images)}, len(y)={len(labels)}"
        )


def warn_unlike_training(images: np.ndarray, image_shape: tuple[int, ...], *, name="X") -> None:
    """Warn when images to predict differ from the training images in size or scale.

    Such images still get predictions (they are resized to the backbone's input as the
    training images were), but usually worse ones, so this warns rather than raises.

    Parameters
    ----------
    images : numpy.ndarray
        An ``(n, H, W, C)`` batch from :func:`as_image_batch`.
    image_shape : tuple of int
        The fitted estimator's ``image_shape_``, ``(H, W, C)`` of the training images.
    name : str
        Name used in warning messages.

    Warns
    -----
    UserWarning
        If the images are not ``H x W`` pixels, or are floats within 0..1 (pixel
        intensities in skfer are 0..255, so such images look almost black).
    """
    height, width = image_shape[:2]
    if images.shape[1:3] != (height, width):
        warnings.warn(
            f"{name} holds {images.shape[2]}x{images.shape[1]} images but the model was fitted "
            f"on {width}x{height} images; they are resized, but faces framed or scaled unlike "
            f"the training images are predicted worse. Crop and resize them as the training "
            f"images were. Received: shape={images.shape}",
            UserWarning,
            stacklevel=2,
        )
    if images.dtype.kind == "f" and images.size and 0 < images.max() <= 1 and images.min() >= 0:
        warnings.warn(
            f"{name} holds floats within 0..1, but skfer expects pixel intensities in 0..255, "
            f"so these images look almost black to the model; multiply them by 255. "
            f"Received: min={images.min():g}, max={images.max():g}",
            UserWarning,
            stacklevel=2,
        )
