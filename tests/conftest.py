"""Shared fixtures: the real data and weights in ``../shared`` and small FER2013 subsets."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("SKFER_SHARED_DIR", PROJECT_ROOT.parent / "shared"))


def pytest_collection_modifyitems(config, items):
    """Files holding slow tests run first (the order within a file is kept): with two
    workers, each file in one (``-n 2 --dist loadfile`` in pyproject.toml), a long file
    collected last would run alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


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


def _tiny_cnn(input_shape):
    """Two conv blocks with BatchNorm: a backbone that traces and trains in well under a second."""
    import keras

    inputs = keras.Input(shape=input_shape)
    x = inputs
    for block, filters in enumerate((8, 16), start=1):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(name=f"conv{block}_bn")(x)
        x = keras.layers.ReLU(name=f"conv{block}_relu")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def register_tiny_backbone(name: str, block_ends: tuple[str, ...]) -> None:
    """Register the tiny test CNN as backbone ``name``, cut into blocks at ``block_ends``
    (once per process)."""
    from skfer.backbones import TF_MODE, BackboneSpec, list_backbones, register_backbone

    if name not in list_backbones():
        register_backbone(
            BackboneSpec(
                name=name,
                builder=_tiny_cnn,
                preprocessing=TF_MODE,
                default_input_size=16,
                min_input_size=8,
                block_ends=block_ends,
                description="test-only backbone",
            )
        )


register_tiny_backbone("tiny_test_cnn", ("conv1_relu", "conv2_relu"))

TINY = dict(
    backbone="tiny_test_cnn",
    weights=None,
    head=(8,),
    short_epochs=1,
    long_epochs=1,
    short_learning_rate=1e-2,
    long_learning_rate=1e-3,
    batch_size=16,
    validation_fraction=None,
    verbose=0,
    random_state=0,
)


def two_class_images(n: int, size: int, *, darken: int, seed: int = 0):
    """``n`` random gray images, alternately of class 0 and 1; class 1 has its top half
    divided by ``darken``, so a small CNN separates them in a few epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.integers(0, 256, (n, size, size)).astype(np.uint8)
    X[y == 1, : size // 2] //= darken
    return X, y


@pytest.fixture
def tiny_params() -> dict:
    """Parameters of a TransferCNNClassifier on the tiny test backbone: fits in about a second."""
    return dict(TINY)


@pytest.fixture(scope="session")
def fer2013(fer2013_csv):
    """The shared FER2013 file, parsed once per test session."""
    from skfer.datasets import load_fer2013

    return load_fer2013(fer2013_csv)


@pytest.fixture(scope="session")
def fer2013_subset(fer2013):
    """420 Training images (60 per class) and 350 PublicTest images (50 per class)."""
    rng = np.random.default_rng(0)

    def per_class(split, n):
        index = np.concatenate(
            [rng.choice(np.flatnonzero(split.target == k), n, replace=False) for k in range(7)]
        )
        rng.shuffle(index)
        return split.images[index], split.target[index]

    X, y = per_class(fer2013.train, 60)
    X_test, y_test = per_class(fer2013.public_test, 50)
    return X, y, X_test, y_test


def run_on_jax(script: str, *args: str, devices: int = 1, timeout: int = 600) -> dict:
    """Run ``python -c script *args`` on Keras' JAX backend with ``devices`` CPU devices and
    return the JSON report on its last line of output. Skips without jax (fails under CI)."""
    if importlib.util.find_spec("jax") is None:
        message = "jax is not installed (it is in the dev extra: pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    flags = os.environ.get("XLA_FLAGS", "")
    if devices > 1:
        flags += f" --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
