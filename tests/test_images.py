"""``skfer.images.warn_unlike_training``: images unlike the training images are flagged."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from skfer.images import as_image_batch, warn_unlike_training

SHAPE = (48, 48, 1)


def test_images_like_the_training_images_pass_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unlike_training(as_image_batch(np.zeros((2, 48, 48), np.uint8)), SHAPE)
        warn_unlike_training(as_image_batch(np.full((2, 48, 48), 200.0)), SHAPE)
        warn_unlike_training(as_image_batch(np.zeros((2, 48, 48))), SHAPE)  # black floats


def test_another_size_warns_with_both_sizes():
    images = as_image_batch(np.zeros((2, 64, 32), np.uint8))
    with pytest.warns(UserWarning, match=r"holds 32x64 images but the model was fitted on 48x48"):
        warn_unlike_training(images, SHAPE, name="X_test")


def test_floats_in_0_1_warn_with_the_fix():
    images = as_image_batch(np.full((2, 48, 48), 0.5))
    with pytest.warns(UserWarning, match=r"floats within 0\.\.1.*multiply them by 255"):
        warn_unlike_training(images, SHAPE)


def test_both_problems_give_two_warnings():
    images = as_image_batch(np.full((1, 10, 10, 3), 0.5))
    with pytest.warns(UserWarning) as record:
        warn_unlike_training(images, (48, 48, 3))
    assert len(record) == 2
