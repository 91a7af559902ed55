"""Options for big machines: two-device data parallelism, mixed precision, XLA."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from skfer import TransferCNNClassifier

TWO_CPU_DEVICES = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
    sys.path.insert(0, {tests!r})
    from conftest import TINY
    from skfer import TransferCNNClassifier

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (64, 16, 16)).astype(np.uint8)
    y = np.arange(64) % 2
    clf = TransferCNNClassifier(**dict(TINY, distribution="mirrored", long_epochs=1)).fit(X, y)
    print("REPLICAS", clf._strategy.num_replicas_in_sync)
    print("PROBA", clf.predict_proba(X).shape, np.allclose(clf.predict_proba(X).sum(1), 1))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpu_devices_fits_and_predicts():
    script = TWO_CPU_DEVICES.format(tests=os.path.dirname(__file__))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REPLICAS 2" in result.stdout
    assert "PROBA (64, 2) True" in result.stdout


@pytest.mark.parametrize(
    ("precision", "compute_dtype"), [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_precision_keeps_a_float32_output(tiny_params, precision, compute_dtype):
    import keras

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 16, 16)).astype(np.uint8)
    y = np.arange(32) % 2
    clf = TransferCNNClassifier(**tiny_params, precision=precision).fit(X, y)
    assert clf.model_.get_layer("head_dense_1").compute_dtype == compute_dtype
    assert clf.model_.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1, rtol=1e-5)


def test_xla_compiled_training_runs(tiny_params):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (32, 16, 16)).astype(np.uint8)
    y = np.arange(32) % 2
    clf = TransferCNNClassifier(**tiny_params, jit_compile=True).fit(X, y)
    assert clf.predict(X).shape == (32,)


def test_unknown_distribution_and_precision_are_refused(tiny_params):
    X = np.zeros((8, 16, 16), dtype=np.uint8)
    y = np.arange(8) % 2
    with pytest.raises(ValueError, match="distribution must be one of"):
        TransferCNNClassifier(**tiny_params, distribution="tpu").fit(X, y)
    with pytest.raises(ValueError, match="precision must be one of"):
        TransferCNNClassifier(**tiny_params, precision="float8").fit(X, y)
