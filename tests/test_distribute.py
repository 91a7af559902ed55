"""``distribution='data_parallel'``: ``keras.distribution.DataParallel`` on JAX, a no-op on one
device.

JAX fixes its devices when it starts, reading ``XLA_FLAGS``, so the JAX checks run in a
subprocess: with ``--xla_force_host_platform_device_count=2`` the CPU shows up as two devices,
each training batch is split between them and every model variable is replicated on both.
"""

from __future__ import annotations

import os
import textwrap

import keras
import numpy as np
import pytest
from conftest import run_on_jax

from skfer import TransferCNNClassifier
from skfer.cli import _DISTRIBUTIONS, build_parser, main
from skfer.distribute import DISTRIBUTIONS, make_strategy

TESTS = os.path.dirname(__file__)

RECORD_TRAINING_BATCHES = """
import functools
import jax

batches = []  # per training step: the sharding of its input images
plain_jit = jax.jit

def recording_jit(function=None, *args, **kwargs):
    if function is None:  # used as @jax.jit(static_argnames=...)
        return lambda decorated: recording_jit(decorated, *args, **kwargs)
    jitted = plain_jit(function, *args, **kwargs)
    if getattr(function, "__name__", "") != "train_step":
        return jitted

    @functools.wraps(function)
    def recording(state, data, *rest, **options):
        x = jax.tree.leaves(data)[0]
        batches.append(
            [str(x.sharding.spec), sorted(shard.data.shape[0] for shard in x.addressable_shards)]
        )
        return jitted(state, data, *rest, **options)

    return recording

jax.jit = recording_jit  # before Keras binds it
"""

SETUP = """
import json, sys
import keras
import numpy as np
sys.path.insert(0, sys.argv[1])  # the tests folder, for conftest
from conftest import TINY, two_class_images
from skfer import TransferCNNClassifier

X, y = two_class_images(96, 16, darken=4)
"""

TWO_DEVICES = (
    RECORD_TRAINING_BATCHES
    + SETUP
    + textwrap.dedent(
        """
    from skfer.distribute import even_rows

    params = dict(TINY, distribution="data_parallel", short_epochs=4, long_epochs=1)
    # 15 validation images: the last one is left out, so that every batch splits in two
    clf = TransferCNNClassifier(**dict(params, validation_fraction=0.15))
    clf.fit(X, y)
    try:
        TransferCNNClassifier(**dict(params, batch_size=15)).fit(X, y)
        batch_size_error = None
    except ValueError as error:
        batch_size_error = str(error)
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        val_rows = len(even_rows((np.zeros(15), np.zeros(15)), clf._strategy)[1])
    print(json.dumps({
        "devices": keras.distribution.list_devices(),
        "strategy": type(clf._strategy).__name__,
        "batches": batches,
        "replicated": [
            w.value.sharding.is_fully_replicated and len(w.value.sharding.device_set)
            for w in clf.model_.weights
        ],
        "loss": clf.history_["loss"],
        "val_rows": val_rows,
        "val_warning": [str(w.message) for w in caught],
        "proba_shape": clf.predict_proba(X[:7]).shape,
        "batch_size_error": batch_size_error,
    }))
    """
    )
)

ONE_DEVICE = SETUP + textwrap.dedent(
    """
    fits = {
        distribution: TransferCNNClassifier(**TINY, distribution=distribution).fit(X, y)
        for distribution in (None, "data_parallel")
    }
    plain, parallel = fits[None], fits["data_parallel"]
    print(json.dumps({
        "devices": keras.distribution.list_devices(),
        "strategy": repr(parallel._strategy),
        "same_history": plain.history_ == parallel.history_,
        "difference": float(np.abs(plain.predict_proba(X) - parallel.predict_proba(X)).max()),
    }))
    """
)


def test_data_parallel_on_two_jax_devices_splits_batches_and_replicates_variables():
    report = run_on_jax(TWO_DEVICES, TESTS, devices=2)
    assert report["devices"] == ["cpu:0", "cpu:1"]
    assert report["strategy"] == "DataParallel"
    # Every training step of both phases (cached features, then images): the batch of 16 in
    # two halves of 8, one per device, split along the batch axis.
    assert len(report["batches"]) == 5 * 6  # 5 epochs of 81 training images, 6 full batches
    assert {spec.split(",")[0] for spec, _ in report["batches"]} == {"P('batch'"}
    assert all(rows == [8, 8] for _, rows in report["batches"])
    assert set(report["replicated"]) == {2}  # every weight whole on both devices
    loss = report["loss"]
    assert len(loss) == 5 and loss[-1] < 0.95 * loss[0]
    assert report["val_rows"] == 14
    assert any("the last 1 of the 15 validation images" in m for m in report["val_warning"])
    assert report["proba_shape"] == [7, 2]
    assert "batch_size must be a multiple of 2. Received: batch_size=15" in (
        report["batch_size_error"] or ""
    )


def test_data_parallel_on_one_jax_device_trains_as_without():
    report = run_on_jax(ONE_DEVICE, TESTS, devices=1)
    assert report["devices"] == ["cpu:0"]
    assert report["strategy"] == "None"
    assert report["same_history"]
    assert report["difference"] == 0.0


def test_data_parallel_on_one_device_of_this_backend_trains_as_without(tiny_params):
    if len(keras.distribution.list_devices()) > 1:
        pytest.skip("this process sees more than one device")
    X = np.random.default_rng(0).integers(0, 256, (32, 16, 16)).astype(np.uint8)
    y = np.arange(32) % 2
    assert make_strategy("data_parallel", batch_size=15) is None
    plain = TransferCNNClassifier(**tiny_params).fit(X, y)
    parallel = TransferCNNClassifier(**tiny_params, distribution="data_parallel").fit(X, y)
    np.testing.assert_array_equal(parallel.predict_proba(X), plain.predict_proba(X))


def test_train_command_takes_distribution_and_checks_the_batch_size_early(
    tmp_path, monkeypatch, capsys
):
    assert _DISTRIBUTIONS == DISTRIBUTIONS[1:]
    unread = tmp_path / "never_read.csv"
    unread.write_text("not a FER2013 file: the options fail first")
    argv = ["train", "--data", str(unread), "--backbone", "mobilenet", "--out", "m.skfer"]
    assert build_parser().parse_args([*argv, "--distribution", "data_parallel"]).distribution == (
        "data_parallel"
    )
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(keras.distribution, "list_devices", lambda: ["gpu:0", "gpu:1"])
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--quiet", "--distribution", "data_parallel", "--batch-size", "15"])
    assert exit_info.value.code == 2
    assert "batch_size must be a multiple of 2. Received: batch_size=15" in capsys.readouterr().err
