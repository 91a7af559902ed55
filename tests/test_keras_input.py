"""How skfer hands its batches to Keras (skfer.backend.keras_input): in order, every epoch in
the order its batches say, one batch ahead, and on TensorFlow without tf.data's autotuning."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest
from conftest import run_on_jax

from skfer.backend import OrderedBatches, keras_input, predict_in_full_batches
from skfer.training import ShuffledBatches

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"


def _elements(data) -> list:
    return [tuple(np.asarray(part) for part in batch) for batch in data]


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the tf.data pipeline is TensorFlow's")
def test_the_pipeline_gives_the_batches_in_order_without_autotuning():
    x = np.arange(20, dtype=np.float16).reshape(10, 2)
    y = np.arange(10)
    with keras_input(OrderedBatches(x, y, batch_size=4)) as (data, callbacks):
        assert data.options().autotune.enabled is False
        assert int(data.cardinality()) == 3
        read = _elements(data)
    assert [len(batch[0]) for batch in read] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([batch[0] for batch in read]), x)
    np.testing.assert_array_equal(np.concatenate([batch[1] for batch in read]), y)
    assert read[0][0].dtype == np.float16  # not cast: the model casts its input
    assert len(callbacks) == 1


def test_elsewhere_the_batches_go_to_keras_with_their_epochs_ended_by_the_callback(
    monkeypatch,
):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    x, y = np.arange(10).reshape(5, 2), np.arange(5)
    batches = ShuffledBatches(x, y, 2, seed=0)
    with keras_input(batches) as (data, callbacks):
        first = data[0][0].copy()
        data.on_epoch_end()  # what Keras calls when fit starts: the order stays epoch 0's
        np.testing.assert_array_equal(data[0][0], first)
        assert len(data) == len(batches) == 3
        (epoch_end,) = callbacks
        epoch_end.on_epoch_end(0)
    np.testing.assert_array_equal(data[0][0], ShuffledBatches(x, y, 2, seed=0, epoch=1)[0][0])


def _traced(x) -> bool:
    if keras.backend.backend() != "jax":
        return False
    import jax

    return isinstance(x, jax.core.Tracer)


class _Recorder(keras.layers.Layer):
    """Passes its input on and keeps a copy of each batch (the model runs eagerly)."""

    def __init__(self, seen: list, **kwargs):
        super().__init__(**kwargs)
        self.keep = seen.append  # not the list: Keras would track a copy of it

    def call(self, x):
        if not _traced(x):  # JAX traces the model once to build it: no batch yet
            self.keep(keras.ops.convert_to_numpy(x))
        return x

    def compute_output_spec(self, x):
        return keras.KerasTensor(x.shape, x.dtype)


def test_fit_sees_each_epoch_in_the_order_of_the_shuffled_batches():
    x = np.arange(22, dtype=np.float32).reshape(11, 2)
    y = np.arange(11) % 2
    seen: list = []
    inputs = keras.Input((2,))
    outputs = keras.layers.Dense(2, activation="softmax")(_Recorder(seen)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", "sparse_categorical_crossentropy", run_eagerly=True)
    batches = ShuffledBatches(x, y, 4, seed=5)
    with keras_input(batches) as (data, callbacks):
        model.fit(data, epochs=3, shuffle=False, callbacks=callbacks, verbose=0)
    expected = [
        ShuffledBatches(x, y, 4, seed=5, epoch=epoch)[index][0]
        for epoch in range(3)
        for index in range(3)
    ]
    assert len(seen) == len(expected) == 9  # no batch read ahead for the next epoch trained
    for got, want in zip(seen, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_on_jax_too_fit_sees_each_epoch_in_the_order_of_the_shuffled_batches():
    # Keras' JAX backend reads a PyDataset itself, and calls its on_epoch_end once when fit
    # starts: without skfer's view the first epoch took the second epoch's order.
    script = (
        "import json, sys, pytest\n"
        "code = pytest.main([sys.argv[1], '-q', '-n', '0', '-p', 'no:cacheprovider', "
        "'-k', 'test_fit_sees_each_epoch_in_the_order_of_the_shuffled_batches'])\n"
        "print(json.dumps({'exit_code': int(code)}))"
    )
    assert run_on_jax(script, __file__) == {"exit_code": 0}


def test_predict_through_the_pipeline_gives_the_rows_in_order():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    x = np.random.default_rng(0).normal(size=(10, 3)).astype("float32")
    np.testing.assert_allclose(
        predict_in_full_batches(model, x, 4), keras.ops.convert_to_numpy(model(x)), rtol=1e-6
    )


def test_class_weights_ride_with_the_batches_as_keras_weighs_them():
    x = np.zeros((4, 1), np.float32)
    labels = np.array([0, 1, 2, 1])
    weights = {0: 2.0, 1: 0.5}  # class 2 missing: weight 1, as in Keras
    by_label = ShuffledBatches(x, labels, 4, seed=0, class_weight=weights)
    _, y, w = by_label[0]
    np.testing.assert_array_equal(w, [weights.get(int(c), 1.0) for c in y])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    by_rows = ShuffledBatches(x, one_hot, 4, seed=0, class_weight=weights)
    _, rows, w = by_rows[0]
    np.testing.assert_array_equal(w, [weights.get(int(c), 1.0) for c in rows.argmax(axis=1)])
    assert w.dtype == np.float32
    assert len(ShuffledBatches(x, labels, 4, seed=0)[0]) == 2  # no weights asked: none given


@pytest.mark.skipif(not ON_TENSORFLOW, reason="the tf.data pipeline is TensorFlow's")
def test_leaving_the_block_lets_go_of_the_batches():
    """TensorFlow keeps every from_generator pipeline's generator; the batches (and the arrays
    they hold) must not stay with it: run v19 kept every predicted chunk, 22.8 GB."""
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    batches = OrderedBatches(np.ones((10, 3), np.float32), batch_size=4)
    alive = weakref.ref(batches)
    with keras_input(batches) as (data, callbacks):
        model.predict(data, verbose=0)
    del batches, callbacks  # the caller's own references
    gc.collect()
    assert alive() is None
    with pytest.raises(Exception, match="after its with block"):  # TensorFlow wraps it
        _elements(data)
