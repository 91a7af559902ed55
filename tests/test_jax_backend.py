"""skfer on Keras' JAX backend: a fit / predict_proba / save / load round trip, compiled.

Keras picks its backend once per process, so the round trip runs in a subprocess with
``KERAS_BACKEND=jax``. It records every function that Keras hands to ``jax.jit``: an
uncompiled JAX training step runs op by op (80x slower on an H100), so the test fails unless
the training step of both phases is compiled, augmentation included, and counts how often
each compiled step is traced: once per new batch shape, so skfer's full batches keep it to one.
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import run_on_jax

ROUND_TRIP = textwrap.dedent(
    """
    import functools, json, sys, warnings
    import jax

    compiled, traced = [], []
    plain_jit = jax.jit

    def recording_jit(function=None, *args, **kwargs):
        if function is None:  # used as @jax.jit(static_argnames=...)
            return lambda decorated: recording_jit(decorated, *args, **kwargs)
        name = getattr(function, "__name__", repr(function))
        compiled.append(name)

        @functools.wraps(function)
        def tracing(*a, **k):  # jax.jit runs it once per new input shape: one compilation
            traced.append(name)
            return function(*a, **k)

        return plain_jit(tracing, *args, **kwargs)

    jax.jit = recording_jit  # before Keras binds it
    import keras
    import numpy as np
    import skfer
    from skfer.backbones import TF_MODE, BackboneSpec, register_backbone

    def small_cnn(input_shape):  # BatchNorm and a depthwise conv, as MobileNet: compiles fast
        inputs = keras.Input(shape=input_shape)
        x = keras.layers.Conv2D(8, 3, strides=2, name="conv1")(inputs)
        x = keras.layers.BatchNormalization(name="conv1_bn")(x)
        x = keras.layers.DepthwiseConv2D(3, name="conv_dw")(x)
        return keras.Model(inputs, keras.layers.ReLU(name="relu")(x))

    register_backbone(BackboneSpec("small_cnn", small_cnn, TF_MODE, 24, 16,
                                   block_ends=("conv1_bn", "relu")))

    warnings.filterwarnings("error", message=".*support `jit_compile")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (100, 20, 20), dtype=np.uint8)  # batches of 32: 3 and a part
    y = np.repeat(["happy", "sad", "neutral", "happy"], [32, 32, 32, 4])
    clf = skfer.TransferCNNClassifier(
        "small_cnn", weights=None, input_size=24, head=(8,), short_epochs=1, long_epochs=1,
        augmentation=True, batch_size=32, random_state=0, verbose=0,
        stopping_metric="balanced_accuracy",  # a stateful metric, reset every epoch
    )
    clf.fit(X, y)
    train_traces = traced.count("train_step")
    del traced[:]
    proba = clf.predict_proba(X[:10])
    clf.predict_proba(X[:50])
    predict_traces = len(traced)
    path = clf.save(sys.argv[1])
    loaded = skfer.load(path)
    print(json.dumps({
        "backend": keras.backend.backend(),
        "jit_compile": clf.model_.jit_compile,
        "train_steps_compiled": compiled.count("train_step"),
        "train_step_traces": train_traces,
        "predict_traces": predict_traces,
        "proba_sums": proba.sum(axis=1).tolist(),
        "max_difference_after_load": float(np.abs(loaded.predict_proba(X[:10]) - proba).max()),
        "classes": loaded.classes_.tolist(),
        "val_balanced_accuracy": clf.history_["val_balanced_accuracy"],
    }))
    """
)


def test_fit_predict_save_load_on_jax_with_compiled_training_steps(tmp_path):
    report = run_on_jax(ROUND_TRIP, str(tmp_path / "model.skfer"))
    assert report["backend"] == "jax"
    assert report["jit_compile"] is True
    assert report["train_steps_compiled"] >= 2  # the short phase's and the long phase's
    # Full batches: each phase's training step compiles once, not again for a last, smaller
    # batch; predictions of 10 and 50 rows pad to full batches of 32 and compile once.
    assert report["train_step_traces"] == 2
    assert report["predict_traces"] == 1
    assert report["proba_sums"] == pytest.approx([1.0] * 10, abs=1e-5)
    assert report["max_difference_after_load"] < 1e-6
    assert report["classes"] == ["happy", "neutral", "sad"]
    assert len(report["val_balanced_accuracy"]) == 2  # early stopping followed it
