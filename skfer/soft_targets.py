"""Soft targets: train a classifier on label distributions (e.g. FER+ vote shares).

``TransferCNNClassifier.fit(X, y, target_distribution=P)`` trains with categorical
cross-entropy against the rows of ``P`` instead of the one-hot labels of ``y``; ``y`` still
gives ``classes_`` (and the stratification of a validation split), and the validation data
keep their hard labels, so the validation accuracy means what it does without ``P``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_target_distribution", "mix_with_labels", "soft_target_data"]

SUM_TOLERANCE = 1e-4
"""How far from 1 a row of a target distribution may sum (float32 rounding and CSV decimals)."""


def check_target_distribution(distribution, n_samples: int, classes: np.ndarray) -> np.ndarray:
    """Validate a target distribution and return it as float32.

    Parameters
    ----------
    distribution : array-like of shape (n_samples, n_classes)
        One probability distribution per sample over ``classes``, in that order.
    n_samples : int
        Number of training samples (the length of ``y``).
    classes : ndarray of shape (n_classes,)
        The estimator's ``classes_``.

    Returns
    -------
    ndarray of shape (n_samples, n_classes), float32

    Raises
    ------
    ValueError
        If the shape is wrong, or a value is not finite or negative, or a row does not sum
        to 1 (within ``SUM_TOLERANCE``); the message names the first bad row.
    """
    try:
        values = np.asarray(distribution, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "target_distribution must be a numeric array of shape (n_samples, n_classes). "
            f"Received: {type(distribution).__name__} ({error})"
        ) from error
    expected = (n_samples, len(classes))
    if values.shape != expected:
        raise ValueError(
            f"target_distribution must have shape (n_samples, n_classes) = {expected}: one row "
            f"per sample of y, one column per class of classes_ = {classes.tolist()} (sorted "
            f"labels of y), in that order. Received: shape {values.shape}"
        )
    for problem, bad in (
        ("is not finite", ~np.isfinite(values).all(axis=1)),
        ("has a negative value", (values < 0).any(axis=1)),
        (
            f"does not sum to 1 (tolerance {SUM_TOLERANCE:g})",
            np.abs(values.sum(axis=1) - 1) > SUM_TOLERANCE,
        ),
    ):
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"target_distribution row {row} {problem}; each row must be a probability "
                f"distribution over classes_ (non-negative, summing to 1). {int(bad.sum())} "
                f"row(s) are affected. Received: row {row} = {values[row].tolist()}"
            )
    return values.astype(np.float32)


def soft_target_data(train, train_distribution, validation, n_classes: int):
    """Keras training and validation data for a soft-target fit.

    Parameters
    ----------
    train : tuple (images, class indices)
        The training part of the data, as split for a hard-label fit.
    train_distribution : ndarray of shape (len(train[0]), n_classes)
        The target distribution of those images, in the same order.
    validation : tuple (images, class indices) or None
        The hard-labelled validation data; its labels are one-hot encoded, as the
        categorical cross-entropy loss needs.
    n_classes : int
        Number of classes.

    Returns
    -------
    train : tuple (images, distribution rows)
    validation : tuple (images, one-hot labels) or None
    """
    train = (train[0], train_distribution)
    if validation is not None:
        X_val, y_val = validation
        validation = (X_val, np.eye(n_classes, dtype=np.float32)[y_val])
    return train, validation


def mix_with_labels(distribution, target, share: float, n_classes: int) -> np.ndarray:
    """``share`` of ``distribution`` plus ``1 - share`` of the one-hot labels, row by row.

    A row of ``distribution`` that is NaN (an image without votes) takes its one-hot label.

    Parameters
    ----------
    distribution : ndarray of shape (n, n_classes)
        Vote distributions; NaN rows where an image has none.
    target : ndarray of shape (n,)
        Class indices.
    share : float
        The votes' weight, in [0, 1].
    n_classes : int
        Number of classes.

    Returns
    -------
    ndarray of shape (n, n_classes), float64
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1]. Received: share={share!r}")
    labels = np.eye(n_classes)[np.asarray(target)]
    votes = np.asarray(distribution, dtype=np.float64)
    votes = np.where(np.isnan(votes).any(axis=1, keepdims=True), labels, votes)
    return share * votes + (1 - share) * labels
