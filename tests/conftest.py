"""Shared fixtures: the real data and weights in ``../shared`` and small FER2013 subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("SKFER_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


def shared_path(relative: str) -> Path:
    """Return ``SHARED_DIR / relative``; fail under CI, skip otherwise, when it is missing."""
    path = SHARED_DIR / relative
    if not path.exists():
        message = f"{path} is missing: the real FER2013 data and weights live in ../shared"
        if os.environ.get("CI"):
            pytest.fail(message + " (required when CI is set)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def fer2013_csv() -> Path:
    return shared_path("data/fer2013/fer2013.csv.gz")


@pytest.fixture(scope="session")
def mobilenet_imagenet_weights() -> Path:
    return shared_path("weights/mobilenet_v1_0.25_imagenet_notop/mobilenet_2_5_224_tf_no_top.h5")


@pytest.fixture(scope="session")
def mobilenet_face_weights() -> Path:
    return shared_path("weights/retinaface_mobilenet025_widerface/retinaface_mobilenet025.h5")
