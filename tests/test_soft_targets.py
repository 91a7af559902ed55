"""Soft targets: ``TransferCNNClassifier.fit(..., target_distribution=P)``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import two_class_images

from skfer import TransferCNNClassifier


@pytest.fixture
def params(tiny_params) -> dict:
    """Short training that separates ``two_class_images``, with a held-out quarter."""
    return {**tiny_params, "short_epochs": 3, "long_epochs": 1, "validation_fraction": 0.25}


def test_one_hot_distribution_trains_as_the_hard_labels(params):
    X, y = two_class_images(64, 16, darken=3)
    hard = TransferCNNClassifier(**params).fit(X, y)
    soft = TransferCNNClassifier(**params).fit(X, y, target_distribution=np.eye(2)[y])
    np.testing.assert_allclose(soft.history_["loss"], hard.history_["loss"], rtol=1e-4)
    assert soft.history_["val_accuracy"] == hard.history_["val_accuracy"]
    np.testing.assert_allclose(soft.predict_proba(X), hard.predict_proba(X), atol=1e-4)


def test_soft_targets_drive_the_fit_and_validation_stays_on_hard_labels(params):
    X, y = two_class_images(64, 16, darken=8)
    params = {**params, "short_epochs": 4, "long_epochs": 6, "long_learning_rate": 1e-2}
    params["patience"] = None  # early stopping would pick the flipped fit's least-flipped epoch
    hard = TransferCNNClassifier(**params).fit(X, y)
    assert hard.score(X, y) >= 0.8 and hard.predict_proba(X).max() > 0.9
    flipped = TransferCNNClassifier(**params).fit(X, y, target_distribution=np.eye(2)[1 - y])
    assert flipped.score(X, y) <= 0.2  # it learnt the distribution, not y
    assert flipped.history_["val_accuracy"][-1] <= 0.2  # scored against the hard labels
    smooth = np.where(np.eye(2)[y] == 1, 0.7, 0.3)
    soft = TransferCNNClassifier(**params).fit(X, y, target_distribution=smooth)
    assert soft.score(X, y) >= 0.8 and soft.predict_proba(X).max() < 0.8  # about 0.7


@pytest.mark.parametrize(
    ("distribution", "message"),
    [
        (np.full((64, 3), 1 / 3), r"shape \(n_samples, n_classes\) = \(64, 2\).*shape \(64, 3\)"),
        (np.full((63, 2), 0.5), r"= \(64, 2\).*Received: shape \(63, 2\)"),
        (np.full(64, 0.5), r"Received: shape \(64,\)"),
        ([["a", "b"]] * 64, "must be a numeric array"),
        (np.where(np.arange(128).reshape(64, 2) == 5, np.nan, 0.5), "row 2 is not finite"),
        (np.tile([1.5, -0.5], (64, 1)), "row 0 has a negative value.*64 row"),
        (np.tile([0.6, 0.6], (64, 1)), r"row 0 does not sum to 1 .*\[0.6, 0.6\]"),
    ],
)
def test_bad_distributions_raise_before_training(tiny_params, distribution, message):
    X, y = two_class_images(64, 16, darken=3)
    clf = TransferCNNClassifier(**tiny_params)
    with pytest.raises(ValueError, match=message):
        clf.fit(X, y, target_distribution=distribution)
    assert not hasattr(clf, "model_")
